-- One database per service (intake is created by POSTGRES_DB); no service reads another's.
CREATE DATABASE routing;
CREATE DATABASE notification;
CREATE DATABASE reporting;
