"""The client packages are tested from their source trees (clients/python is not installed)."""

from __future__ import annotations

import sys

from deploy.stack.processes import ROOT

sys.path.insert(0, str(ROOT / "clients" / "python"))
