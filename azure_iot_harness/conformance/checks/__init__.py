"""The conformance checks: pytest modules run by `azure-iot-harness conformance` (or by
`pytest --pyargs azure_iot_harness.conformance.checks`)."""
