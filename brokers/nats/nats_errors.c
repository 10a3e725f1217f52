#include "nats_errors.h"

bool natsb_is_server_wide(natsStatus s)
{
    switch (s) {
    case NATS_IO_ERROR:
    case NATS_CONNECTION_CLOSED:
    case NATS_NO_SERVER:
    case NATS_STALE_CONNECTION:
    case NATS_SECURE_CONNECTION_WANTED:
    case NATS_SECURE_CONNECTION_REQUIRED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_CONNECTION_AUTH_FAILED:
    case NATS_NOT_PERMITTED:
    case NATS_SLOW_CONSUMER:
    case NATS_INSUFFICIENT_BUFFER: /* the reconnect buffer is full */
    case NATS_NO_MEMORY:
    case NATS_SSL_ERROR:
    case NATS_NO_SERVER_SUPPORT:
    case NATS_NOT_YET_CONNECTED:
    case NATS_DRAINING:
    case NATS_NO_RESPONDERS:
    case NATS_PROTOCOL_ERROR:
    case NATS_LINE_TOO_LONG: return true;
    default: return false;
    }
}

/* Errors the JetStream server answered in a PubAck. */
static obx_status classify_js(jsErrCode code)
{
    switch (code) {
    case JSStreamMessageExceedsMaximumErr: /* over the stream's max_msg_size */
    case JSStreamNotMatchErr:              /* Nats-Expected-Stream differs */
    case JSStreamWrongLastSequenceErr:     /* expectations we never set */
    case JSStreamWrongLastMsgIDErr: return OBX_PERMANENT;
    case JSNotEnabledErr:
    case JSNotEnabledForAccountErr:
    case JSInsufficientResourcesErr:
    case JSStreamStoreFailedErr: /* e.g. disk full */
    case JSStreamLimitsErr:      /* full, discard = new */
    case JSStreamSealedErr:
    case JSStreamOfflineErr:
    case JSClusterNoPeersErr:
    case JSStreamNotFoundErr:
        /* The stream or the server, not this event: dead-lettering would
         * empty the outbox into the DLQ. */
        return OBX_UNAVAILABLE;
    default: return OBX_RETRY;
    }
}

obx_status natsb_classify(natsStatus s, jsErrCode code)
{
    if (s == NATS_OK)
        return OBX_OK;
    if (code != 0)
        return classify_js(code);
    switch (s) {
    case NATS_MAX_PAYLOAD:
    case NATS_INVALID_SUBJECT: return OBX_PERMANENT;
    case NATS_TIMEOUT: return OBX_RETRY;
    default: return natsb_is_server_wide(s) ? OBX_UNAVAILABLE : OBX_RETRY;
    }
}

obx_status natsb_no_responders(bool js_answers, bool stream_missing)
{
    return js_answers && !stream_missing ? OBX_PERMANENT : OBX_UNAVAILABLE;
}

const char *natsb_hint(natsStatus s, jsErrCode code)
{
    switch (code) {
    case JSStreamMessageExceedsMaximumErr:
        return "larger than the stream's max_msg_size";
    case JSStreamNotMatchErr:
        return "the subject is captured by another stream than "
               "broker.expect_stream";
    case JSNotEnabledErr:
    case JSNotEnabledForAccountErr:
        return "start nats-server with JetStream (-js), or set broker.mode = "
               "core";
    case JSStreamStoreFailedErr:
    case JSInsufficientResourcesErr:
        return "the server cannot store the message (disk or memory limits)";
    default: break;
    }
    switch (s) {
    case NATS_MAX_PAYLOAD: return "larger than the server's max_payload";
    case NATS_CONNECTION_AUTH_FAILED:
        return "check broker.user/password, token, nkey or creds_file";
    case NATS_NOT_PERMITTED:
        return "the user may not publish there (permissions)";
    case NATS_TIMEOUT:
        return "no PubAck in time; republished with the same Nats-Msg-Id";
    case NATS_SLOW_CONSUMER:
        return "PubAcks were dropped on our connection (slow consumer)";
    default: return NULL;
    }
}
