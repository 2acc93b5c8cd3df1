/* rtp-i18n.c: per-request translation with uselocale() and plain dgettext() */
#define G_LOG_DOMAIN "RtpI18n"

#include "rtp-i18n.h"

#include <string.h>

/* Languages with a catalogue in po/LINGUAS, and the locales that can carry them. */
static const struct {
  const char *language;
  const char *const locales[4];
} supported[] = {
  { "de", { "de_DE.UTF-8", "de_DE.utf8", "de_AT.UTF-8", "de_CH.UTF-8" } },
};

static locale_t cached[G_N_ELEMENTS (supported)];
static gboolean looked_up[G_N_ELEMENTS (supported)];
G_LOCK_DEFINE_STATIC (cache);

void
rtp_i18n_init (void)
{
  const char *dir = g_getenv ("RTP_LOCALEDIR");

  bindtextdomain (GETTEXT_PACKAGE, dir != NULL ? dir : LOCALEDIR);
  /* translations come out as UTF-8 whatever LC_CTYPE the request's locale has */
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
}

locale_t
rtp_i18n_get_locale (const char *language)
{
  locale_t result = (locale_t) 0;

  if (language == NULL)
    return result;
  G_LOCK (cache);
  for (gsize i = 0; i < G_N_ELEMENTS (supported); i++)
    {
      if (g_ascii_strncasecmp (language, supported[i].language, strlen (supported[i].language)) != 0)
        continue;
      if (!looked_up[i])
        {
          looked_up[i] = TRUE;
          for (gsize j = 0; j < G_N_ELEMENTS (supported[i].locales) && supported[i].locales[j] != NULL; j++)
            {
              cached[i] = newlocale (LC_MESSAGES_MASK, supported[i].locales[j], (locale_t) 0);
              if (cached[i] != (locale_t) 0)
                break;
            }
          if (cached[i] == (locale_t) 0)
            g_warning ("no locale for language '%s' is installed; its users will read English", supported[i].language);
        }
      result = cached[i];
      break;
    }
  G_UNLOCK (cache);
  return result;
}

const char *
rtp_i18n_negotiate (const char *accept_language)
{
  g_auto (GStrv) parts = NULL;
  const char *best = "en";
  double best_q = 0;

  if (accept_language == NULL)
    return best;
  parts = g_strsplit (accept_language, ",", 16);
  for (guint i = 0; parts[i] != NULL; i++)
    {
      g_auto (GStrv) fields = g_strsplit (parts[i], ";", 4);
      const char *tag = g_strstrip (fields[0]);
      double q = 1.0;

      for (guint j = 1; fields[j] != NULL; j++)
        {
          const char *f = g_strstrip (fields[j]);
          if (g_str_has_prefix (f, "q="))
            q = g_ascii_strtod (f + 2, NULL);
        }
      if (q <= best_q)
        continue;
      if (g_ascii_strncasecmp (tag, "en", 2) == 0 && (tag[2] == '\0' || tag[2] == '-'))
        {
          best = "en";
          best_q = q;
          continue;
        }
      for (gsize k = 0; k < G_N_ELEMENTS (supported); k++)
        {
          gsize n = strlen (supported[k].language);
          if (g_ascii_strncasecmp (tag, supported[k].language, n) == 0 &&
              (tag[n] == '\0' || tag[n] == '-' || tag[n] == '_'))
            {
              best = supported[k].language;
              best_q = q;
            }
        }
    }
  return best;
}

const char *
rtp_i18n_translate (const char *language, const char *msgid)
{
  locale_t loc = rtp_i18n_get_locale (language);
  locale_t old;
  const char *out;

  if (loc == (locale_t) 0)
    return msgid;
  old = uselocale (loc);
  out = dgettext (GETTEXT_PACKAGE, msgid);
  uselocale (old);
  return out;
}
