"""TLS under a hostile server: certificates the device must refuse (with an alert, before any
MQTT), and ones it must cope with. The emulator serves the certificate for the next
connections (`tls-certificate` fault); the check drops the device so that it reconnects into it."""

from __future__ import annotations

from collections.abc import Callable

from ..context import Context
from ..model import Check, CheckError, Event, Evidence, Verdict
from .resilience import drop

DA = "AWS IoT Device Advisor TLS test cases"
D_TLS = "Azure docs: TLS support in IoT Hub"
D_ROOT = "Azure docs: IoT Hub's migration to DigiCert Global Root G2 (devices must trust the new root)"


def _tls_events(ctx: Context, since: int) -> list[Event]:
    return [e for e in ctx.device_events(since) if e.type == "TLS" and (e.listener or "hub") == ctx.listener]


def refuses(certificate: str) -> Callable[[Context], Verdict]:
    def run(ctx: Context) -> Verdict:
        attempts = 2
        ctx.require_online()
        ctx.fault("tls-certificate", count=attempts, certificate=certificate)
        mark, close = drop(ctx)

        def served() -> list[Event]:
            return [e for e in _tls_events(ctx, mark) if (e.get("tls") or {}).get("server_cert") == certificate]

        def decided() -> bool:
            seen = served()
            accepted = any(p.is_in("CONNECT") for e in seen for p in ctx.connection_events(e.conn))
            return accepted or len(seen) >= attempts

        ctx.wait(decided)
        seen = served()
        evidence = Evidence([close, *seen])
        if not seen:
            if not _tls_events(ctx, mark):
                return Verdict.failed(f"no reconnect within {ctx.timeout:g} s to judge", evidence)
            raise CheckError(f"the emulator did not serve the {certificate} certificate")
        for e in seen:
            connect = [p for p in ctx.connection_events(e.conn) if p.is_in("CONNECT")]
            outcome = (e.get("tls") or {}).get("outcome")
            if connect or outcome == "completed":
                evidence.events += connect[:1]
                return Verdict.failed(f"accepted a server certificate that is {certificate.replace('-', ' ')}" +
                                      (" and sent CONNECT" if connect else ""), evidence)
        outcomes = {(e.get("tls") or {}).get("outcome") for e in seen}
        warnings = [] if outcomes == {"alert"} else ["closed the connection without a TLS alert: send one (bad_certificate, unknown_ca…)"]
        alerts = sorted({str((e.get("tls") or {}).get("alert")) for e in seen if (e.get("tls") or {}).get("alert")})
        ctx.end_check()
        ctx.wait(lambda: ctx.online(close.seq), timeout=max(ctx.remaining(), 5.0))
        return Verdict.passed(f"refused the {certificate} certificate before MQTT" + (f" (alert {', '.join(alerts)})" if alerts else ""),
                              evidence, warnings)

    return run


def copes(kind: str, **params: str) -> Callable[[Context], Verdict]:
    what = params.get("certificate", kind)

    def run(ctx: Context) -> Verdict:
        ctx.require_online()
        ctx.fault(kind, count=1, **params)
        mark, close = drop(ctx)

        def served() -> list[Event]:
            return [e for e in _tls_events(ctx, mark) if (e.get("tls") or {}).get("server_cert")]

        def decided() -> bool:
            seen = served()
            return bool(seen) and any(e.is_out("CONNACK") or e.type == "CLOSE" for e in ctx.connection_events(seen[0].conn))

        ctx.wait(decided)
        tls = served()
        evidence = Evidence([close, *tls[:2]])
        if not tls:
            if not _tls_events(ctx, mark):
                return Verdict.failed(f"no reconnect within {ctx.timeout:g} s to judge", evidence)
            raise CheckError(f"the emulator did not serve the {what} certificate")
        hello = tls[0]
        outcome = hello.get("tls") or {}
        accepted = [e for e in ctx.connection_events(hello.conn) if e.is_out("CONNACK") and e.get("return_code", 0) == 0]
        if outcome.get("outcome") != "completed" or not accepted:
            why = outcome.get("alert") or outcome.get("reason") or outcome.get("outcome")
            return Verdict.failed(f"could not connect with the {what} server certificate ({why})", evidence)
        evidence.events += accepted[:1]
        return Verdict.passed(f"connected with the {what} server certificate ({outcome.get('server_cert')})", evidence)

    return run


CHECKS = (
    Check("tls.rejects-wrong-host", "Refuses a certificate for another host", "A server certificate whose names do not include the hub's host name is refused, with a TLS alert, before CONNECT.",
          DA + " (TLS incorrect subject name server cert); " + D_TLS, refuses("wrong-host"), timeout=60, needs=("tls-faults",), fault_kinds=("tls-certificate",)),
    Check("tls.rejects-unknown-root", "Refuses an unknown root", "A server certificate chaining to a root the device was not given is refused, with a TLS alert, before CONNECT.",
          DA + " (TLS unsecure server cert)", refuses("unknown-root"), timeout=60, needs=("tls-faults",), fault_kinds=("tls-certificate",)),
    Check("tls.rejects-expired", "Refuses an expired certificate", "An expired server certificate is refused with a TLS alert before CONNECT.",
          DA + " (TLS expired server cert)", refuses("expired"), timeout=60, needs=("tls-faults",), fault_kinds=("tls-certificate",)),
    Check("tls.rejects-not-yet-valid", "Refuses a not-yet-valid certificate", "A server certificate whose validity starts in the future is refused with a TLS alert before CONNECT.",
          D_TLS + " (certificate validation)", refuses("not-yet-valid"), timeout=60, needs=("tls-faults",), fault_kinds=("tls-certificate",)),
    Check("tls.large-certificate", "Copes with a large server certificate", "The device completes the handshake with a large server certificate chain.",
          DA + " (TLS large size server cert)", copes("tls-certificate", certificate="huge"), timeout=60, needs=("tls-faults",),
          fault_kinds=("tls-certificate",)),
    Check("tls.max-records", "Copes with maximum-size TLS records", "The device handles TLS records of the maximum size (16 KiB).",
          DA + " (TLS receive maximum size fragments)", copes("tls-max-records"), timeout=60, needs=("tls-faults",), fault_kinds=("tls-max-records",)),
    Check("tls.rotated-root", "Trusts the rotated root", "After the hub's server certificate moves to the new root (as Baltimore → DigiCert Global Root G2), the device still connects.",
          D_ROOT, copes("tls-certificate", certificate="rotated-root"), timeout=60, needs=("tls-faults",), fault_kinds=("tls-certificate",)),
)
