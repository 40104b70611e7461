-- One database and one login role per service; each role owns only its own database, and no
-- other role (PUBLIC) may connect to it. No service uses the superuser, and no service role may
-- create databases or roles. Run once by the postgres image on an empty data directory, with
-- the passwords from the container's environment (psql 15's \getenv; compose sets them).
-- An existing installation (one shared role): run this file once with psql as the superuser,
-- then point each service at its role (docs/operations.md).
\set ON_ERROR_STOP on

\getenv intake_password NTBCARE_DB_PASSWORD_INTAKE
\getenv routing_password NTBCARE_DB_PASSWORD_ROUTING
\getenv notification_password NTBCARE_DB_PASSWORD_NOTIFICATION
\getenv reporting_password NTBCARE_DB_PASSWORD_REPORTING
\getenv gateway_password NTBCARE_DB_PASSWORD_GATEWAY

CREATE ROLE ntbcare_intake LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'intake_password';
CREATE ROLE ntbcare_routing LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'routing_password';
CREATE ROLE ntbcare_notification LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'notification_password';
CREATE ROLE ntbcare_reporting LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'reporting_password';
CREATE ROLE ntbcare_gateway LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'gateway_password';

-- The owner may create its tables (PostgreSQL 15: the public schema belongs to the database owner).
CREATE DATABASE intake OWNER ntbcare_intake;
CREATE DATABASE routing OWNER ntbcare_routing;
CREATE DATABASE notification OWNER ntbcare_notification;
CREATE DATABASE reporting OWNER ntbcare_reporting;
CREATE DATABASE gateway OWNER ntbcare_gateway;

REVOKE ALL ON DATABASE intake FROM PUBLIC;
REVOKE ALL ON DATABASE routing FROM PUBLIC;
REVOKE ALL ON DATABASE notification FROM PUBLIC;
REVOKE ALL ON DATABASE reporting FROM PUBLIC;
REVOKE ALL ON DATABASE gateway FROM PUBLIC;
