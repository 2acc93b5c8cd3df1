/* rtp-value-gate.h: MQTT values that need nothing of the main loop, settled on the reader's thread */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Longest PV (topic part after the prefix) and payload the reader's thread looks at itself;
 * longer ones go to the main loop, which decides as before. */
#define RTP_VALUE_GATE_MAX_PV 256
#define RTP_VALUE_GATE_MAX_PAYLOAD 64
/* PVs the gate keeps a record of at most (one per PV of the database that was judged quiet). */
#define RTP_VALUE_GATE_MAX_ENTRIES 200000

typedef struct _RtpValueGate RtpValueGate;

/* Returns: (transfer full) */
RtpValueGate *rtp_value_gate_new (const char *topic_prefix);
RtpValueGate *rtp_value_gate_ref (RtpValueGate *gate);
void rtp_value_gate_unref (RtpValueGate *gate);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RtpValueGate, rtp_value_gate_unref)

/* Any thread (paho's reader): TRUE when the message was a quiet PV's number inside its quiet
 * range — then it is kept as the PV's latest value and as heard, and nothing else needs doing;
 * FALSE: the main loop must handle it. */
gboolean rtp_value_gate_take (RtpValueGate *gate, const char *topic, gsize topic_len, const void *payload, gsize len);

/* Main thread. */
void rtp_value_gate_set_quiet (RtpValueGate *gate, const char *pv, double lo, double hi);
void rtp_value_gate_set_quiet_until (RtpValueGate *gate, const char *pv, double lo, double hi, gint64 until_us);
void rtp_value_gate_forward (RtpValueGate *gate, const char *pv);
void rtp_value_gate_set_watched (RtpValueGate *gate, const char *pv, gboolean watched);
void rtp_value_gate_forward_all (RtpValueGate *gate);
gboolean rtp_value_gate_claim_silence (RtpValueGate *gate, const char *pv, gint64 heard_before_us);
gboolean rtp_value_gate_get_latest (RtpValueGate *gate, const char *pv, gint64 *time_us, double *value);
guint rtp_value_gate_count_quiet (RtpValueGate *gate);

G_END_DECLS
