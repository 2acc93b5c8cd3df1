/* rtp-config.h: typed, validated settings from defaults, file, environment and command line */
#pragma once

#include <glib-object.h>

G_BEGIN_DECLS

#define RTP_TYPE_CONFIG (rtp_config_get_type ())
G_DECLARE_FINAL_TYPE (RtpConfig, rtp_config, RTP, CONFIG, GObject)

/* Returns: (transfer full) */
RtpConfig *rtp_config_new (void);

gboolean rtp_config_load_file (RtpConfig *self, const char *path, gboolean must_exist, GError **error);
gboolean rtp_config_load_data (RtpConfig *self, const char *data, const char *origin, GError **error);
void rtp_config_load_environment (RtpConfig *self, const char *const *envp);
void rtp_config_set_override (RtpConfig *self, const char *key, const char *value);
gboolean rtp_config_validate (RtpConfig *self, GError **error);

/* Returns: (transfer none) */
const char *rtp_config_get_string (RtpConfig *self, const char *key);
gint64 rtp_config_get_int (RtpConfig *self, const char *key);
double rtp_config_get_double (RtpConfig *self, const char *key);
gboolean rtp_config_is_set (RtpConfig *self, const char *key);
GStrv rtp_config_restart_needed (RtpConfig *self, RtpConfig *fresh);

/* Returns: (transfer none) */
const char *rtp_config_get_state_dir (RtpConfig *self);
void rtp_config_set_state_dir (RtpConfig *self, const char *dir);
/* The database URI with the embedded default filled in. */
/* Returns: (transfer full) */
char *rtp_config_dup_database_uri (RtpConfig *self);

G_END_DECLS
