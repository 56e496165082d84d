"""The Device Provisioning Service, on the hub's MQTT and HTTPS listeners.

Sans-IO: `protocol` (topics, ids, answers, error catalogue), `enrollments` (service API
documents), `attestation` (credential → enrollment), `allocation` (hub choice, reprovisioning).
Then `state` (SQLite), `dps` (the service), and the adapters `session` (MQTT), `rest` (device
REST API), `service_rest` (service API) and `webhook` (custom allocation).
"""
