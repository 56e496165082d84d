"""The client side of a running emulator: what the command line, the client programs and the
conformance suite share to find and talk to one, and nothing of the emulator's inside.

- `endpoints`: the endpoints file `serve` writes into its data folder, read with clear errors.
- `lookup`: `RunningEmulator`, the emulator of a data folder as a client program finds it.
- `connection_strings`: the one parser and builder of Azure's connection strings.
- `service`: the hub's and DPS's service REST APIs (`ServiceRest`), and the calls to the
  running emulator's (identities, cloud-to-device messages).
- `errors`: `CommandError`, a failure reported as one line with an exit code.

Imports run downwards only: `cli` → `clients`, `conformance` → `running` → `emulator`, `certs`,
`config`, `errors` (tests/test_layers.py checks it).
"""
