"""Root pytest configuration. eventlet must patch the standard library before anything imports
sockets or threads (nameko's test helpers and our services run on eventlet); without it pytest
hangs on the first RPC."""
import os

# hypothesis loads third-party entry points at import; trio's (a selenium dependency) breaks
# under eventlet's green sockets, and the tests need none of them.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")
# Databases the tests build in-process are migrated on first use, as in development.
os.environ.setdefault("NTBCARE_AUTO_MIGRATE", "1")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")  # said once, at import

import eventlet  # noqa: E402

eventlet.monkey_patch()

from shared.glue import pg_wait  # noqa: E402

pg_wait.install()  # as the services' runner does: in-process PostgreSQL waits the same way

warnings.filterwarnings("ignore", category=DeprecationWarning)
