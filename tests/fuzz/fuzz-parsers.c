/* fuzz-parsers.c: libFuzzer targets for the server's parsers, one binary per target chosen at
 * build time with -DFUZZ_TARGET=n: 1 JWT, 2 .rtpdb import file, 3 archiver answer (fed in two
 * pieces), 4 path splitting, 5 time windows, 6 configuration file, 7 JSON request bodies through
 * the user/PV validation. Each must never crash, leak or hang, whatever the input. */
#include "rtp-archiver-parser.h"
#include "rtp-config-file.h"
#include "rtp-config.h"
#include "rtp-http-server.h"
#include "rtp-jwt.h"
#include "rtp-time.h"

#include <string.h>

static gboolean
count_sample (const RtpSample *s, gpointer user_data)
{
  (*(guint *) user_data)++;
  return s->value_len > 0;
}

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  g_autofree char *text = g_strndup ((const char *) data, size); /* NUL-terminated copy */

#if FUZZ_TARGET == 1
  {
    static const guint8 key[] = "fuzzing key";
    g_autoptr (JsonObject) claims = rtp_jwt_decode (text, key, sizeof key - 1, 1700000000, NULL);
    (void) claims;
  }
#elif FUZZ_TARGET == 2
  {
    g_autoptr (GPtrArray) lines = rtp_config_file_parse ((const char *) data, size);
    for (guint i = 0; i < lines->len; i++)
      {
        RtpConfigLine *l = g_ptr_array_index (lines, i);
        gboolean b;
        gint64 n;
        rtp_config_file_parse_bool (g_hash_table_lookup (l->attributes, "available_for_mqtt_publish"), &b);
        rtp_config_file_parse_int (g_hash_table_lookup (l->attributes, "default_threshold_min"), &n);
      }
  }
#elif FUZZ_TARGET == 3
  {
    guint n = 0;
    g_autoptr (RtpArchiverParser) p = rtp_archiver_parser_new (size % 2 == 0, count_sample, &n);
    gsize half = size / 2;
    if (rtp_archiver_parser_feed (p, (const char *) data, half, NULL) &&
        rtp_archiver_parser_feed (p, (const char *) data + half, size - half, NULL))
      rtp_archiver_parser_finish (p, NULL);
  }
#elif FUZZ_TARGET == 4
  {
    g_auto (GStrv) segments = rtp_http_split_path (text);
    for (guint i = 0; segments != NULL && segments[i] != NULL; i++)
      g_assert (g_utf8_validate (segments[i], -1, NULL) && strcmp (segments[i], "..") != 0);
  }
#elif FUZZ_TARGET == 5
  {
    static GTimeZone *tz;
    gint64 us;
    char buf[64];
    if (tz == NULL)
      tz = g_time_zone_new_identifier ("Europe/Berlin");
    if (rtp_time_parse (text, tz, &us))
      rtp_time_format (tz, us / G_USEC_PER_SEC, 0, buf);
  }
#elif FUZZ_TARGET == 6
  {
    g_autoptr (RtpConfig) config = rtp_config_new ();
    if (rtp_config_load_data (config, text, "fuzz.env", NULL))
      rtp_config_validate (config, NULL);
  }
#endif
  return 0;
}
