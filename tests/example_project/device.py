"""The "firmware" under test: a tiny paho device, as a project would have its own."""

import json
import ssl
import threading

import paho.mqtt.client as mqtt


class Device:
    def __init__(self, creds):
        self.creds = creds
        self.connected = threading.Event()
        self.c2d = []
        self.c2d_arrived = threading.Event()
        self.client = mqtt.Client(client_id=creds.client_id, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(creds.username, creds.password)  # password None for X.509
        ctx = ssl.create_default_context(cafile=creds.ca_file)  # trust the emulator's CA, never verify=False
        if creds.cert_file:
            ctx.load_cert_chain(creds.cert_file, creds.key_file)
        self.client.tls_set_context(ctx)
        self.client.on_connect = lambda c, u, f, rc: rc == 0 and self.connected.set()
        self.client.on_message = self._on_message
        self.subacks = {}
        self.client.on_subscribe = lambda c, u, mid, granted: self.subacks.setdefault(mid, threading.Event()).set()

    def __enter__(self):
        self.client.connect(self.creds.host, self.creds.mqtt_port)
        self.client.loop_start()
        assert self.connected.wait(10), "no CONNACK 0"
        return self

    def __exit__(self, *exc):
        self.client.disconnect()
        self.client.loop_stop()

    def send_reading(self, celsius):
        topic = f"devices/{self.creds.device_id}/messages/events/$.ct=application%2Fjson&$.ce=utf-8&unit=C"
        self.client.publish(topic, json.dumps({"temperature": celsius}), qos=1).wait_for_publish(10)

    def serve_methods(self):
        """Answer every direct method with its payload doubled."""
        def on_method(client, userdata, msg):
            name_rid = msg.topic.split("/")[-2:]
            rid = name_rid[1].split("$rid=")[1]
            value = json.loads(msg.payload)
            client.publish(f"$iothub/methods/res/200/?$rid={rid}", json.dumps({"result": value * 2}))
        self.client.message_callback_add("$iothub/methods/POST/#", on_method)
        self._subscribe("$iothub/methods/POST/#", 0)

    def receive_c2d(self):
        self._subscribe(f"devices/{self.creds.device_id}/messages/devicebound/#", 1)

    def _subscribe(self, topic, qos):
        """Subscribe and wait for the SUBACK: the hub delivers only after the subscription."""
        _, mid = self.client.subscribe(topic, qos=qos)
        assert self.subacks.setdefault(mid, threading.Event()).wait(10), f"no SUBACK for {topic}"

    def _on_message(self, client, userdata, msg):
        self.c2d.append((msg.topic, msg.payload.decode()))
        self.c2d_arrived.set()
