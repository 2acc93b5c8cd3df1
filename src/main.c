/* main.c: create the application, run it */
#include "rtp-application.h"


int
main (int argc, char **argv)
{
  g_autoptr (RtpApplication) app = NULL;
  int status;

  /* LANGUAGE would override the per-request locale of every answer; cleared before any thread exists */
  g_unsetenv ("LANGUAGE");
  app = rtp_application_new ();
  status = g_application_run (G_APPLICATION (app), argc, argv);

  return status != 0 ? status : rtp_application_get_exit_status (app);
}
