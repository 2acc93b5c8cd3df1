/* main.c: create the application, run it */
#include "rtp-application.h"

#include <malloc.h>

int
main (int argc, char **argv)
{
  g_autoptr (RtpApplication) app = NULL;
  int status;

  /* large blocks (argon2id's 19 MiB, big answers) stay mmapped and go back to the system when
   * freed; glibc would otherwise raise its threshold and keep them in its arenas */
  mallopt (M_MMAP_THRESHOLD, 1024 * 1024);
  /* LANGUAGE would override the per-request locale of every answer; cleared before any thread exists */
  g_unsetenv ("LANGUAGE");
  app = rtp_application_new ();
  status = g_application_run (G_APPLICATION (app), argc, argv);

  return status != 0 ? status : rtp_application_get_exit_status (app);
}
