"""Connects to the edge gateway but checks its certificate against the hub's host name (the TLS
server name is HostName, not GatewayHostName): the gateway's certificate does not match."""

import ssl
import sys
from typing import Any

from azure_iot_harness.clients.reference_device import ReferenceDevice, main


class HubNameContext(ssl.SSLContext):
    hub = ""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["server_hostname"] = self.hub
        return super().wrap_socket(sock, *args, **kwargs)


class Device(ReferenceDevice):
    def tls(self) -> ssl.SSLContext:
        ctx = HubNameContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.hub = self.s.host
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(self.s.ca_file)
        return ctx


if __name__ == "__main__":
    sys.exit(main(Device))
