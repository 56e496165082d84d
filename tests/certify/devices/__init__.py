"""Deliberately broken devices: each a small paho program that is the reference device
(`azure_iot_harness.clients.reference_device`) with one misbehaviour, so that every certify
check is shown failing on a device that breaks its rule. Run as `python -m
tests.certify.devices.NAME [reference-device flags]` under `certify --run`."""
