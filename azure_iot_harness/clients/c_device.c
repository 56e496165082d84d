/*
 * The C device of `azure-iot-harness client c-device`: a firmware-style IoT Hub device on
 * Eclipse Paho C's synchronous client (Debian's libpaho-mqtt-dev), single-threaded, the way the
 * Azure Embedded C SDK's Paho samples run on a microcontroller's host build.
 *
 * One boot sequence:
 *   1. with --id-scope: provision with DPS over MQTT: subscribe $dps/registrations/res/#, register
 *      with an empty payload, poll with the operation id after each retry-after, every request
 *      with $rid=1; the assignment names the hub and the device id;
 *   2. connect to the hub: client id = device id, username
 *      {hub}/{device}/?api-version=…&DeviceClientType=…[&model-id=…], clean session 0,
 *      keep-alive 240 s, a SAS token or a client certificate;
 *   3. subscribe devices/+/messages/devicebound/# (C2D), $iothub/methods/POST/#,
 *      $iothub/twin/res/# and $iothub/twin/PATCH/properties/desired/#;
 *   4. telemetry at QoS 1 with a property bag the device percent-encodes itself;
 *   5. twin GET, then a reported patch (optionally the whole fixed-size buffer, NUL-padded, as
 *      a Plug and Play sample publishes it);
 *   6. "ready", then C2D messages, desired updates and method calls (answered 200 with an
 *      echo) until --c2d/--desired/--methods are met or --wait runs out, or for --serve seconds.
 *
 * Signing is left to the host, as on firmware with a secure element: for a SAS connection the
 * program prints "token? {audience}" and reads the password from stdin (--token gives it at once).
 * Output: one line per step or event on stdout; a failure is one "error: ..." line on stderr and
 * exit 1 (2 for usage).
 */

#define _POSIX_C_SOURCE 200809L

#include <MQTTClient.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEEPALIVE_SECONDS 240 /* the C SDKs' default */
#define ANSWER_MS 30000
#define MAX_PROPS 32
#define MAX_MESSAGES 1000

static const char *CONNACK_TEXT[] = {"accepted", "unacceptable protocol version", "identifier rejected",
                                     "server unavailable", "bad user name or password", "not authorized"};

struct options {
    const char *address, *host, *device_id, *ca_file, *cert, *key, *token, *api_version, *model_id, *client_type;
    int port;
    const char *dps_address, *id_scope, *registration_id, *dps_token;
    int dps_port;
    const char *messages[MAX_MESSAGES];
    int message_count;
    const char *props[MAX_PROPS];
    int prop_count;
    int json_body;
    double interval;
    const char *report;
    int report_buffer;
    int want_c2d, want_desired, want_methods;
    double wait, serve;
};

struct session {
    MQTTClient client;
    const char *what; /* "the hub", "DPS": for messages */
    char tls_error[512];
    /* the answer being waited for: a twin response or a DPS answer */
    char want_prefix[64], want_rid[16];
    int answered, status;
    char *body;
    int body_len;
    char version[32], retry_after[16];
    int c2d, desired, methods;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void fail(int code, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fputs("error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pause_for(double seconds) {
    if (seconds <= 0) return;
    struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Percent-encode everything but RFC 3986's unreserved characters (space is %20, never '+'). */
static void url_encode(const char *in, char *out, size_t size) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *in && n + 4 < size; in++) {
        unsigned char c = (unsigned char)*in;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
}

/* How many bytes the UTF-8 sequence at `p` takes (0: not valid UTF-8 there). */
static int utf8_length(const unsigned char *p, int left) {
    int n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : 0;
    if (n == 0 || n > left) return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* `bytes` as a JSON string: control characters escaped, UTF-8 as it is, any other byte as the
   character of the same number (so that the output is always UTF-8). */
static void print_json_string(const char *bytes, int len) {
    const unsigned char *p = (const unsigned char *)bytes;
    putchar('"');
    for (int i = 0; i < len;) {
        unsigned char c = p[i];
        int n = c >= 0x80 ? utf8_length(p + i, len - i) : 1;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f || n == 0) printf("\\u%04x", c);
        else fwrite(p + i, 1, (size_t)n, stdout);
        i += n ? n : 1;
    }
    putchar('"');
}

/* The value of `"name": "value"` in a flat reading of a JSON text (ids and host names only). */
static int json_string_field(const char *json, int len, const char *name, char *out, size_t size) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\"", name);
    const char *end = json + len, *p = json;
    size_t klen = strlen(key);
    while (p + klen <= end) {
        const char *hit = memchr(p, '"', (size_t)(end - p));
        if (!hit || hit + klen > end) return 0;
        if (memcmp(hit, key, klen) == 0) {
            const char *v = hit + klen;
            while (v < end && (*v == ' ' || *v == ':')) v++;
            if (v >= end || *v != '"') return 0;
            v++;
            size_t n = 0;
            while (v < end && *v != '"' && n + 1 < size) out[n++] = *v++;
            out[n] = '\0';
            return 1;
        }
        p = hit + 1;
    }
    return 0;
}

/* The value of `name=` in a topic's query (after '?'), or "" */
static void topic_param(const char *topic, const char *name, char *out, size_t size) {
    out[0] = '\0';
    const char *q = strchr(topic, '?');
    size_t nlen = strlen(name);
    while (q) {
        q++;
        if (strncmp(q, name, nlen) == 0 && q[nlen] == '=') {
            const char *v = q + nlen + 1;
            size_t n = 0;
            while (v[n] && v[n] != '&' && n + 1 < size) { out[n] = v[n]; n++; }
            out[n] = '\0';
            return;
        }
        q = strchr(q, '&');
    }
}

static const char *read_token(const char *audience) {
    static char line[4096];
    printf("token? %s\n", audience);
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) fail(1, "no SAS token for %s on stdin", audience);
    line[strcspn(line, "\r\n")] = '\0';
    return line;
}

/* ---- MQTT ----------------------------------------------------------------------------------- */

/* OpenSSL's first error line, `{hex}:error:{code}:{library}:{function}:{reason}:{file}:{line}:`,
   kept as its reason ("certificate verify failed"). */
static int on_tls_error(const char *str, size_t len, void *context) {
    struct session *s = context;
    if (s->tls_error[0] || len == 0) return 0;
    size_t n = len < sizeof s->tls_error - 1 ? len : sizeof s->tls_error - 1;
    memcpy(s->tls_error, str, n);
    s->tls_error[n] = '\0';
    s->tls_error[strcspn(s->tls_error, "\r\n")] = '\0';
    char *field = s->tls_error;
    for (int i = 0; i < 5 && field; i++) field = strchr(field, ':') ? strchr(field, ':') + 1 : NULL;
    if (field && *field) {
        size_t reason = strcspn(field, ":");
        memmove(s->tls_error, field, reason);
        s->tls_error[reason] = '\0';
    }
    return 0;
}

static void mqtt_connect(struct session *s, const struct options *o, const char *address, int port,
                         const char *client_id, const char *username, const char *password, int clean) {
    char uri[512];
    snprintf(uri, sizeof uri, strchr(address, ':') ? "ssl://[%s]:%d" : "ssl://%s:%d", address, port);
    int rc = MQTTClient_create(&s->client, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc != MQTTCLIENT_SUCCESS) fail(2, "cannot create the MQTT client for %s (%d)", uri, rc);
    MQTTClient_SSLOptions tls = MQTTClient_SSLOptions_initializer;
    tls.trustStore = o->ca_file; /* NULL: the system's CA store */
    tls.keyStore = o->cert;
    tls.privateKey = o->key;
    tls.enableServerCertAuth = 1;
    tls.verify = 1; /* the server certificate must name the address */
    tls.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
    tls.ssl_error_cb = on_tls_error;
    tls.ssl_error_context = s;
    MQTTClient_connectOptions opts = MQTTClient_connectOptions_initializer;
    opts.MQTTVersion = MQTTVERSION_3_1_1;
    opts.keepAliveInterval = KEEPALIVE_SECONDS;
    opts.cleansession = clean;
    opts.username = username;
    opts.password = password;
    opts.ssl = &tls;
    opts.connectTimeout = 30;
    s->tls_error[0] = '\0';
    rc = MQTTClient_connect(s->client, &opts);
    if (rc >= 1 && rc <= 5) fail(1, "%s refused the connection: CONNACK %d (%s)", s->what, rc, CONNACK_TEXT[rc]);
    if (rc != MQTTCLIENT_SUCCESS) {
        if (s->tls_error[0]) fail(1, "cannot connect to %s at %s:%d: TLS: %s", s->what, address, port, s->tls_error);
        fail(1, "cannot connect to %s at %s:%d (paho error %d: unreachable, or it closed the connection)", s->what,
             address, port, rc);
    }
}

static void mqtt_subscribe(struct session *s, int count, char *const *filters) {
    int qos[8];
    for (int i = 0; i < count; i++) qos[i] = 1;
    int rc = MQTTClient_subscribeMany(s->client, count, filters, qos);
    if (rc != MQTTCLIENT_SUCCESS) fail(1, "%s refused or dropped the subscription to %s (%d)", s->what, filters[0], rc);
    for (int i = 0; i < count; i++) {
        if (qos[i] == 0x80) fail(1, "%s refused the subscription to %s", s->what, filters[i]);
        printf("subscribed to %s (QoS %d)\n", filters[i], qos[i]);
    }
}

static void mqtt_publish(struct session *s, const char *topic, const void *payload, int len, int qos) {
    MQTTClient_deliveryToken token;
    int rc = MQTTClient_publish(s->client, topic, len, payload, qos, 0, &token);
    if (rc == MQTTCLIENT_SUCCESS && qos > 0) rc = MQTTClient_waitForCompletion(s->client, token, ANSWER_MS);
    if (rc != MQTTCLIENT_SUCCESS)
        fail(1, "%s did not take the message to %s (%s)", s->what, topic,
             MQTTClient_isConnected(s->client) ? "no PUBACK in time" : "it closed the connection");
}

/* ---- what arrives --------------------------------------------------------------------------- */

static void answer_method(struct session *s, const char *topic, const char *payload, int len) {
    const char *name = topic + strlen("$iothub/methods/POST/");
    int name_len = (int)strcspn(name, "/");
    char rid[128], response_topic[256];
    topic_param(topic, "$rid", rid, sizeof rid);
    s->methods++;
    printf("method {\"name\":");
    print_json_string(name, name_len);
    printf(",\"payload\":");
    print_json_string(payload, len);
    printf("}\n");
    /* {"method": NAME, "echo": PAYLOAD}: the payload is JSON already (null when empty) */
    size_t size = (size_t)len + (size_t)name_len + 64;
    char *body = malloc(size);
    int n = snprintf(body, size, "{\"method\":\"%.*s\",\"echo\":%.*s}", name_len, name, len ? len : 4,
                     len ? payload : "null");
    snprintf(response_topic, sizeof response_topic, "$iothub/methods/res/200/?$rid=%s", rid);
    mqtt_publish(s, response_topic, body, n, 0);
    free(body);
}

static void handle(struct session *s, const char *topic, const MQTTClient_message *m) {
    const char *payload = m->payload;
    int len = m->payloadlen;
    char rid[64];
    topic_param(topic, "$rid", rid, sizeof rid);
    if (s->want_prefix[0] && strncmp(topic, s->want_prefix, strlen(s->want_prefix)) == 0 && !strcmp(rid, s->want_rid)) {
        s->status = atoi(topic + strlen(s->want_prefix));
        topic_param(topic, "$version", s->version, sizeof s->version);
        topic_param(topic, "retry-after", s->retry_after, sizeof s->retry_after);
        free(s->body);
        s->body = malloc((size_t)len + 1);
        memcpy(s->body, payload, (size_t)len);
        s->body[len] = '\0';
        s->body_len = len;
        s->answered = 1;
    } else if (strncmp(topic, "devices/", 8) == 0 && strstr(topic, "/messages/devicebound/")) {
        s->c2d++;
        printf("c2d {\"topic\":");
        print_json_string(topic, (int)strlen(topic));
        printf(",\"payload\":");
        print_json_string(payload, len);
        printf("}\n");
    } else if (strncmp(topic, "$iothub/twin/PATCH/properties/desired/", 38) == 0) {
        s->desired++;
        printf("desired ");
        print_json_string(payload, len);
        printf("\n");
    } else if (strncmp(topic, "$iothub/methods/POST/", 21) == 0) {
        answer_method(s, topic, payload, len);
    } else {
        printf("ignored a message on %s\n", topic);
    }
    fflush(stdout);
}

/* Take in what arrives for up to `ms` (0: what is there); 1 when the connection is up. */
static int pump(struct session *s, unsigned long ms) {
    char *topic = NULL;
    int topic_len = 0;
    MQTTClient_message *m = NULL;
    int rc = MQTTClient_receive(s->client, &topic, &topic_len, &m, ms);
    if (rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED) return 0;
    if (m) {
        handle(s, topic, m);
        MQTTClient_freeMessage(&m);
        MQTTClient_free(topic);
    }
    return MQTTClient_isConnected(s->client);
}

/* Publish a request and wait for its answer: `answer_prefix{status}/?$rid={rid}…`. */
static void request(struct session *s, const char *topic, const void *payload, int len, const char *answer_prefix) {
    snprintf(s->want_prefix, sizeof s->want_prefix, "%s", answer_prefix);
    topic_param(topic, "$rid", s->want_rid, sizeof s->want_rid);
    s->answered = 0;
    mqtt_publish(s, topic, payload, len, 0);
    double deadline = now() + ANSWER_MS / 1000.0;
    while (!s->answered) {
        if (!pump(s, 200)) fail(1, "%s closed the connection after %s", s->what, topic);
        if (now() > deadline) fail(1, "%s did not answer %s within %d s", s->what, topic, ANSWER_MS / 1000);
    }
    s->want_prefix[0] = '\0';
}

/* ---- the boot sequence ------------------------------------------------------------------------ */

static void provision(const struct options *o, char *hub, size_t hub_size, char *device, size_t device_size) {
    struct session s = {.what = "DPS"};
    char username[512], audience[512], topic[512];
    snprintf(username, sizeof username, "%s/registrations/%s/api-version=2019-03-31", o->id_scope, o->registration_id);
    const char *password = NULL;
    if (!o->cert) {
        snprintf(audience, sizeof audience, "%s/registrations/%s", o->id_scope, o->registration_id);
        password = o->dps_token ? o->dps_token : read_token(audience);
    }
    mqtt_connect(&s, o, o->dps_address, o->dps_port, o->registration_id, username, password, 1);
    printf("connected to DPS at %s:%d as registration %s (ID scope %s, %s)\n", o->dps_address, o->dps_port,
           o->registration_id, o->id_scope, o->cert ? "X.509" : "SAS");
    char *filters[] = {"$dps/registrations/res/#"};
    mqtt_subscribe(&s, 1, filters);
    /* No custom payload: an empty body, as the Embedded C SDK sends it. */
    snprintf(topic, sizeof topic, "$dps/registrations/PUT/iotdps-register/?$rid=1");
    for (int attempt = 0;; attempt++) {
        printf("published %s with an empty body\n", topic);
        request(&s, topic, "", 0, "$dps/registrations/res/");
        char status[32] = "", operation[256] = "";
        json_string_field(s.body, s.body_len, "status", status, sizeof status);
        printf("answer %d: %s\n", s.status, status[0] ? status : s.body);
        if (s.status == 200 && strcmp(status, "assigned") == 0) break;
        if (s.status >= 300 && s.status != 429 && s.status < 500) {
            const char *code = strstr(s.body, "\"errorCode\"");
            char message[256] = "";
            json_string_field(s.body, s.body_len, "message", message, sizeof message);
            fail(1, "DPS answered %d with error %ld: %s", s.status, code ? strtol(code + 12, NULL, 10) : 0L, message);
        }
        if (s.status == 200) fail(1, "DPS ended the registration with status %s: %s", status, s.body);
        if (attempt > 60) fail(1, "DPS did not assign the registration after %d requests", attempt);
        json_string_field(s.body, s.body_len, "operationId", operation, sizeof operation);
        pause_for(s.retry_after[0] ? atof(s.retry_after) : 2.0);
        if (operation[0])
            snprintf(topic, sizeof topic, "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=%s",
                     operation);
    }
    if (!json_string_field(s.body, s.body_len, "assignedHub", hub, hub_size) ||
        !json_string_field(s.body, s.body_len, "deviceId", device, device_size))
        fail(1, "the assignment names no hub or device: %s", s.body);
    printf("assigned to %s as device %s\n", hub, device);
    free(s.body);
    MQTTClient_disconnect(s.client, 1000);
    MQTTClient_destroy(&s.client);
}

static void telemetry(struct session *s, const struct options *o, const char *device) {
    char bag[4096] = "", key[512], value[1024], topic[4608];
    size_t used = 0;
    if (o->json_body) used += (size_t)snprintf(bag, sizeof bag, "$.ct=application%%2Fjson&$.ce=utf-8");
    for (int i = 0; i < o->prop_count; i++) {
        const char *eq = strchr(o->props[i], '=');
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - o->props[i]), o->props[i]);
        url_encode(name, key, sizeof key);
        url_encode(eq + 1, value, sizeof value);
        used += (size_t)snprintf(bag + used, sizeof bag - used, "%s%s=%s", used ? "&" : "", key, value);
    }
    snprintf(topic, sizeof topic, "devices/%s/messages/events/%s", device, bag);
    int acked = 0;
    for (int i = 0; i < o->message_count; i++) {
        mqtt_publish(s, topic, o->messages[i], (int)strlen(o->messages[i]), 1);
        acked++;
        printf("sent %d/%d to %s\n", i + 1, o->message_count, topic);
        fflush(stdout);
        if (i + 1 < o->message_count) pause_for(o->interval);
    }
    printf("acknowledged %d of %d messages\n", acked, o->message_count);
}

static void twin(struct session *s, const struct options *o) {
    request(s, "$iothub/twin/GET/?$rid=1", "", 0, "$iothub/twin/res/");
    if (s->status != 200) fail(1, "the twin GET was answered %d: %s", s->status, s->body);
    printf("twin %s\n", s->body);
    if (!o->report) return;
    int len = (int)strlen(o->report);
    int size = o->report_buffer > len ? o->report_buffer : len;
    char *buffer = calloc((size_t)size, 1); /* a fixed-size buffer, sent whole: NUL-padded */
    memcpy(buffer, o->report, (size_t)len);
    request(s, "$iothub/twin/PATCH/properties/reported/?$rid=2", buffer, size, "$iothub/twin/res/");
    free(buffer);
    if (s->status != 204) fail(1, "the reported patch was answered %d: %s", s->status, s->body);
    printf("reported %d bytes (%d of JSON), version %s\n", size, len, s->version);
}

static void serve(struct session *s, const struct options *o) {
    int counting = o->want_c2d || o->want_desired || o->want_methods;
    double deadline = now() + (counting ? o->wait : o->serve);
    for (;;) {
        if (counting && s->c2d >= o->want_c2d && s->desired >= o->want_desired && s->methods >= o->want_methods) return;
        if (now() >= deadline) break;
        if (!pump(s, 100)) fail(1, "%s closed the connection", s->what);
    }
    if (counting)
        fail(1, "within %g s: %d of %d C2D messages, %d of %d desired updates, %d of %d method calls", o->wait, s->c2d,
             o->want_c2d, s->desired, o->want_desired, s->methods, o->want_methods);
}

static void usage(const char *why) {
    fail(2, "%s (this program is run by `azure-iot-harness client c-device`)", why);
}

int main(int argc, char **argv) {
    struct options o = {.port = 8883, .dps_port = 8883, .api_version = "2020-09-30", .client_type = "azure-iot-harness-c",
                        .interval = 1.0, .wait = 60, .serve = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) { o.json_body = 1; continue; }
        if (i + 1 >= argc) usage("an option without its value");
        const char *v = argv[++i];
        if (!strcmp(a, "--address")) o.address = v;
        else if (!strcmp(a, "--port")) o.port = atoi(v);
        else if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--device-id")) o.device_id = v;
        else if (!strcmp(a, "--ca-file")) o.ca_file = v;
        else if (!strcmp(a, "--cert")) o.cert = v;
        else if (!strcmp(a, "--key")) o.key = v;
        else if (!strcmp(a, "--token")) o.token = v;
        else if (!strcmp(a, "--api-version")) o.api_version = v;
        else if (!strcmp(a, "--model-id")) o.model_id = v;
        else if (!strcmp(a, "--client-type")) o.client_type = v;
        else if (!strcmp(a, "--dps-address")) o.dps_address = v;
        else if (!strcmp(a, "--dps-port")) o.dps_port = atoi(v);
        else if (!strcmp(a, "--id-scope")) o.id_scope = v;
        else if (!strcmp(a, "--registration-id")) o.registration_id = v;
        else if (!strcmp(a, "--dps-token")) o.dps_token = v;
        else if (!strcmp(a, "--message") && o.message_count < MAX_MESSAGES) o.messages[o.message_count++] = v;
        else if (!strcmp(a, "--prop") && o.prop_count < MAX_PROPS && strchr(v, '=')) o.props[o.prop_count++] = v;
        else if (!strcmp(a, "--interval")) o.interval = atof(v);
        else if (!strcmp(a, "--report")) o.report = v;
        else if (!strcmp(a, "--report-buffer")) o.report_buffer = atoi(v);
        else if (!strcmp(a, "--c2d")) o.want_c2d = atoi(v);
        else if (!strcmp(a, "--desired")) o.want_desired = atoi(v);
        else if (!strcmp(a, "--methods")) o.want_methods = atoi(v);
        else if (!strcmp(a, "--wait")) o.wait = atof(v);
        else if (!strcmp(a, "--serve")) o.serve = atof(v);
        else usage("an unknown option");
    }
    if (o.id_scope ? !(o.dps_address && o.registration_id) : !(o.host && o.device_id))
        usage("give --host and --device-id, or --id-scope, --dps-address and --registration-id");
    if (!o.cert != !o.key) usage("--cert and --key go together");

    char hub[256], device[256];
    snprintf(hub, sizeof hub, "%s", o.host ? o.host : "");
    snprintf(device, sizeof device, "%s", o.device_id ? o.device_id : "");
    if (o.id_scope) provision(&o, hub, sizeof hub, device, sizeof device);

    struct session s = {.what = "the hub"};
    char username[1024], client_type[256], model[512], audience[600];
    url_encode(o.client_type, client_type, sizeof client_type);
    int n = snprintf(username, sizeof username, "%s/%s/?api-version=%s&DeviceClientType=%s", hub, device,
                     o.api_version, client_type);
    if (o.model_id) {
        url_encode(o.model_id, model, sizeof model);
        snprintf(username + n, sizeof username - (size_t)n, "&model-id=%s", model);
    }
    const char *password = NULL;
    if (!o.cert) {
        snprintf(audience, sizeof audience, "%s/devices/%s", hub, device);
        password = o.token ? o.token : read_token(audience);
    }
    const char *address = o.address ? o.address : hub;
    mqtt_connect(&s, &o, address, o.port, device, username, password, 0);
    printf("connected to mqtts://%s:%d as %s (hub %s, %s) with username %s\n", address, o.port, device, hub,
           o.cert ? "X.509" : "SAS", username);
    char *filters[] = {"devices/+/messages/devicebound/#", "$iothub/methods/POST/#", "$iothub/twin/res/#",
                       "$iothub/twin/PATCH/properties/desired/#"};
    mqtt_subscribe(&s, 4, filters);
    telemetry(&s, &o, device);
    twin(&s, &o);
    printf("ready\n");
    fflush(stdout);
    serve(&s, &o);
    printf("received %d C2D messages, %d desired updates, %d method calls\n", s.c2d, s.desired, s.methods);
    MQTTClient_disconnect(s.client, 1000);
    MQTTClient_destroy(&s.client);
    return 0;
}
