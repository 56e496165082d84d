"""azure-iot-harness: a local, offline stand-in for Azure IoT Hub, DPS and edgeHub."""

__version__ = "0.1.0"
