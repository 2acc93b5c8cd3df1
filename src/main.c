/* main.c: create the application, run it */
#include "rtp-application.h"
#include "rtp-log.h"

#include <malloc.h>

int
main (int argc, char **argv)
{
  g_autoptr (RtpApplication) app = NULL;
  int status;

  /* LANGUAGE would override the per-request locale of every answer; cleared before any thread exists */
  g_unsetenv ("LANGUAGE");
  /* One malloc arena for all threads. argon2id takes 19 MiB per hash on a password worker; in a
   * worker's own arena that block stays after it is freed (malloc_trim does not shrink other arenas),
   * 19 MiB of idle memory per worker. In the main arena the 30 s trim returns it. (Giving such blocks
   * their own mapping instead, M_MMAP_THRESHOLD, costs a page fault per page on every hash: logins
   * ran at a quarter of the speed.) */
  mallopt (M_ARENA_MAX, 1);
  rtp_log_install ();
  app = rtp_application_new ();
  status = g_application_run (G_APPLICATION (app), argc, argv);

  return status != 0 ? status : rtp_application_get_exit_status (app);
}
