/* rtp-i18n.h: message translation.
 *
 * Messages are translated with plain dgettext() so that the per-thread locale set
 * with uselocale() for each request decides the language (see rtp-http-server.c).
 * g_dgettext() is not used: GLib turns translation off process-wide when the
 * process locale is C and a text domain is set. */
#pragma once

#include <libintl.h>

#define _(s) dgettext (GETTEXT_PACKAGE, s)
#define N_(s) (s)

#include <glib.h>
#include <locale.h>

G_BEGIN_DECLS

void rtp_i18n_init (void);
/* The locale that translates into @language ("de"), or (locale_t) 0 for English/unknown. */
locale_t rtp_i18n_get_locale (const char *language);
/* The best supported language for an Accept-Language header; "en" when nothing fits. */
/* Returns: (transfer none) */
const char *rtp_i18n_negotiate (const char *accept_language);
/* Translates @msgid into @language without changing the calling thread's locale for long. */
/* Returns: (transfer none) */
const char *rtp_i18n_translate (const char *language, const char *msgid) G_GNUC_FORMAT (2);

G_END_DECLS
