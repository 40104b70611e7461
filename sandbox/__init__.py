"""NTBCare's local stand-ins for outside systems; today the Graph API sandbox."""

from sandbox.graph_sandbox import SandboxServer, create_app, start_sandbox

__all__ = ["SandboxServer", "create_app", "start_sandbox"]
