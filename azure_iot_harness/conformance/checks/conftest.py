# The suite's options, target fixture, marker rule and reports (see suite.py).
from azure_iot_harness.conformance.suite import *  # noqa: F401,F403
