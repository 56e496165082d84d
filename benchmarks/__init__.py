"""Side-by-side measurements of the emulator against mosquitto and a bare amqtt Broker.

Run them all with `bash benchmarks/run` (installs what is missing, then `python -m benchmarks`).
"""
