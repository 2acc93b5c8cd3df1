/* main.c: create the application, run it */
#include "rtp-application.h"

#include <malloc.h>


int
main (int argc, char **argv)
{
  g_autoptr (RtpApplication) app = NULL;
  int status;

  /* LANGUAGE would override the per-request locale of every answer; cleared before any thread exists */
  g_unsetenv ("LANGUAGE");
  /* Blocks of 1 MiB and more (argon2id's 19 MiB per hash, large answers) get their own mapping and go
   * back to the system when freed. glibc's default threshold rises to the largest block freed so far,
   * after which such blocks stay in a worker thread's arena, out of malloc_trim's reach: 19 MiB of idle
   * memory per password worker after the first login. */
  mallopt (M_MMAP_THRESHOLD, 1024 * 1024);
  app = rtp_application_new ();
  status = g_application_run (G_APPLICATION (app), argc, argv);

  return status != 0 ? status : rtp_application_get_exit_status (app);
}
