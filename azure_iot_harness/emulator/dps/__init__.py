"""The Device Provisioning Service, on the hub's MQTT and HTTPS listeners.

Sans-IO: `..protocol.dps` (topics, ids, answers, DPS's error catalogue), `enrollments` (service
API documents), `attestation` (credential → enrollment), `allocation` (hub choice,
reprovisioning). Then `state` (SQLite), `dps` (the service), and the adapters `session` (MQTT),
`rest` (device REST API), `service_rest` (service API) and `webhook` (custom allocation), whose
routes get a `context.DpsContext`.
"""
