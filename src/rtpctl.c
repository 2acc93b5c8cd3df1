/* rtpctl.c: command-line control of Realtimeplot Server over D-Bus (org.realtimeplot.Server1) */
#include "rtp-error.h"
#include "rtp-dbus-generated.h"
#include "rtp-secrets.h"

#include <gio/gunixfdlist.h>
#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>
#include <glib-unix.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
  "Usage: rtpctl [--session|--system] [--json] COMMAND [ARGUMENTS]\n"
  "\n"
  "Commands:\n"
  "  status                               version, uptime, address, database, counts, MQTT, requests\n"
  "  user list                            all users\n"
  "  user add LOGIN FIRST LAST [--admin] [--email EMAIL]\n"
  "                                       create a user; prints its id and one-time password\n"
  "  user reset-password LOGIN            set a new one-time password and print it\n"
  "  user delete USER                     delete by user_id or login name\n"
  "  pv list                              all process variables\n"
  "  pv add PV [--name NAME] [--publish] [--min N] [--max N]\n"
  "                                       create a process variable (and its experiment)\n"
  "  pv delete PV                         delete a process variable\n"
  "  experiment list                      experiments with their PVs and users\n"
  "  experiment assign SHORT_ID USER_ID   assign a user to an experiment\n"
  "  export                               print the configuration (.rtpdb) on standard output\n"
  "  import FILE                          import a .rtpdb file ('-' for standard input)\n"
  "  publish PV VALUE                     set a value over MQTT (audited as dbus:uid=<your uid>)\n"
  "  reload                               re-read the configuration; lists keys that need a restart\n"
  "  alarm list [STATE]                   alarms that have not ended (STATE: active, unacknowledged,\n"
  "                                       shelved or all)\n"
  "  alarm ack ID [COMMENT]               acknowledge an alarm (recorded as dbus:uid=<your uid>)\n"
  "  alarm shelve ID SECONDS REASON       shelve an alarm for SECONDS\n"
  "  alarm unshelve ID                    end a shelving\n"
  "  data SHORT_ID [PV] [--since TIME] [--until TIME] [--csv|--tsv] [--max-points N]\n"
  "       [--operator OP [--bin-s N]] [--align previous] [--time-format iso|epoch|local]\n"
  "       [--include severity,status]\n"
  "                                       archived data as POST /data answers it (JSON unless --csv\n"
  "                                       or --tsv), on standard output: rtpctl data X --csv > x.csv\n"
  "  snapshot take SHORT_ID NAME [--comment TEXT] [--at TIME]\n"
  "                                       save every PV's value now (or at TIME)\n"
  "  snapshot list SHORT_ID               the experiment's snapshots, newest first\n"
  "  snapshot show SHORT_ID ID            a snapshot with its values\n"
  "  snapshot restore SHORT_ID ID [--dry-run] [PV…]\n"
  "                                       write the saved values back through the guard rails\n"
  "  secret set NAME                      store a secret read from standard input in the keyring\n"
  "                                       (SECRET_KEY, DEFAULT_ADMIN_PASSWORD, RTP_SMTP_PASSWORD,\n"
  "                                       RTP_MQTT_PASSWORD, RTP_DATABASE_PASSWORD,\n"
  "                                       RTP_ALERT_WEBHOOK_SECRET, RTP_LDAP_BIND_PASSWORD,\n"
  "                                       RTP_METRICS_TOKEN);\n"
  "                                       needs no running server\n"
  "\n"
  "Options:\n"
  "  --session        talk to the server on the session bus (default)\n"
  "  --system         talk to the server on the system bus\n"
  "  --json           machine-readable output\n"
  "  -h, --help       this help\n"
  "\n"
  "Exit status: 0 on success, 1 when the server refused or failed, 2 on a usage error.\n";

static gboolean json_output = FALSE;

static int
usage_error (const char *message)
{
  g_printerr ("rtpctl: %s\n\n%s", message, usage);
  return 2;
}

static int
failed (GError *error)
{
  g_dbus_error_strip_remote_error (error);
  g_printerr ("rtpctl: %s\n", error->message);
  g_error_free (error);
  return 1;
}

static void
print_json (GVariant *value)
{
  g_autoptr (JsonNode) node = json_gvariant_serialize (value);
  g_autofree char *text = json_to_string (node, TRUE);
  g_print ("%s\n", text);
}

static void
print_dict (GVariant *dict)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;

  g_variant_iter_init (&iter, dict);
  while (g_variant_iter_next (&iter, "{&sv}", &key, &value))
    {
      g_autofree char *text = g_variant_is_of_type (value, G_VARIANT_TYPE_STRING) ? g_variant_dup_string (value, NULL)
                                                                                  : g_variant_print (value, FALSE);
      g_print ("%s: %s\n", key, text);
      g_variant_unref (value);
    }
}

static const char *
lookup_s (GVariant *dict, const char *key)
{
  const char *v = "";
  g_variant_lookup (dict, key, "&s", &v);
  return v;
}

static int
cmd_status (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  g_autoptr (GVariant) status = NULL;
  if (!rtp_dbus_server1_call_get_status_sync (proxy, &status, NULL, &error))
    return failed (error);
  json_output ? print_json (status) : print_dict (status);
  return 0;
}

static int
cmd_user_list (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  g_autoptr (GVariant) users = NULL;
  GVariantIter iter;
  GVariant *u;
  if (!rtp_dbus_server1_call_list_users_sync (proxy, &users, NULL, &error))
    return failed (error);
  if (json_output)
    {
      print_json (users);
      return 0;
    }
  g_variant_iter_init (&iter, users);
  while ((u = g_variant_iter_next_value (&iter)) != NULL)
    {
      g_print ("%s\t%s\t%s %s\t%s\t%s\t%s\n", lookup_s (u, "user_id"), lookup_s (u, "login_name"),
               lookup_s (u, "first_name"), lookup_s (u, "last_name"), lookup_s (u, "user_type"), lookup_s (u, "email"),
               lookup_s (u, "source"));
      g_variant_unref (u);
    }
  return 0;
}

static int
cmd_user_add (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  const char *type = "User", *email = "";
  g_autofree char *id = NULL;
  g_autofree char *password = NULL;
  if (argc < 5)
    return usage_error ("user add needs LOGIN FIRST LAST");
  for (int i = 5; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--admin"))
        type = "Admin";
      else if (g_str_equal (argv[i], "--email") && i + 1 < argc)
        email = argv[++i];
      else
        return usage_error ("unknown option for user add");
    }
  if (!rtp_dbus_server1_call_create_user_sync (proxy, argv[2], argv[3], argv[4], type, email, &id, &password, NULL,
                                               &error))
    return failed (error);
  if (json_output)
    g_print ("{\"user_id\": \"%s\", \"temporary_password\": \"%s\"}\n", id, password);
  else
    g_print ("user_id: %s\ntemporary_password: %s\n", id, password);
  return 0;
}

static int
cmd_user_reset_password (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  g_autofree char *password = NULL;
  if (argc != 3)
    return usage_error ("user reset-password needs LOGIN");
  if (!rtp_dbus_server1_call_reset_password_sync (proxy, argv[2], &password, NULL, &error))
    return failed (error);
  g_print (json_output ? "{\"temporary_password\": \"%s\"}\n" : "temporary_password: %s\n", password);
  return 0;
}

static int
cmd_user_delete (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  if (argc != 3)
    return usage_error ("user delete needs USER");
  if (!rtp_dbus_server1_call_delete_user_sync (proxy, argv[2], NULL, &error))
    return failed (error);
  return 0;
}

static int
cmd_pv_list (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  g_autoptr (GVariant) pvs = NULL;
  GVariantIter iter;
  GVariant *p;
  if (!rtp_dbus_server1_call_list_pvs_sync (proxy, &pvs, NULL, &error))
    return failed (error);
  if (json_output)
    {
      print_json (pvs);
      return 0;
    }
  g_variant_iter_init (&iter, pvs);
  while ((p = g_variant_iter_next_value (&iter)) != NULL)
    {
      gboolean publish = FALSE;
      g_variant_lookup (p, "available_for_mqtt_publish", "b", &publish);
      g_print ("%s\t%s\t%s\n", lookup_s (p, "pv_string"), lookup_s (p, "human_readable_name"),
               publish ? "publishable" : "-");
      g_variant_unref (p);
    }
  return 0;
}

static int
cmd_pv_add (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  GVariantDict fields;
  if (argc < 3)
    return usage_error ("pv add needs PV");
  g_variant_dict_init (&fields, NULL);
  for (int i = 3; i < argc; i++)
    {
      char *end = NULL;
      if (g_str_equal (argv[i], "--publish"))
        g_variant_dict_insert (&fields, "available_for_mqtt_publish", "b", TRUE);
      else if (g_str_equal (argv[i], "--name") && i + 1 < argc)
        g_variant_dict_insert (&fields, "human_readable_name", "s", argv[++i]);
      else if ((g_str_equal (argv[i], "--min") || g_str_equal (argv[i], "--max")) && i + 1 < argc)
        {
          const char *key = g_str_equal (argv[i], "--min") ? "default_threshold_min" : "default_threshold_max";
          gint64 v = g_ascii_strtoll (argv[++i], &end, 10);
          if (*end != '\0' || argv[i][0] == '\0')
            {
              g_variant_dict_clear (&fields);
              return usage_error ("--min and --max take whole numbers");
            }
          g_variant_dict_insert (&fields, key, "x", v);
        }
      else
        {
          g_variant_dict_clear (&fields);
          return usage_error ("unknown option for pv add");
        }
    }
  if (!rtp_dbus_server1_call_create_pv_sync (proxy, argv[2], g_variant_dict_end (&fields), NULL, &error))
    return failed (error);
  return 0;
}

static int
cmd_pv_delete (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  if (argc != 3)
    return usage_error ("pv delete needs PV");
  if (!rtp_dbus_server1_call_delete_pv_sync (proxy, argv[2], NULL, &error))
    return failed (error);
  return 0;
}

static int
cmd_experiment_list (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  g_autoptr (GVariant) list = NULL;
  GVariantIter iter;
  GVariant *e;
  if (!rtp_dbus_server1_call_list_experiments_sync (proxy, &list, NULL, &error))
    return failed (error);
  if (json_output)
    {
      print_json (list);
      return 0;
    }
  g_variant_iter_init (&iter, list);
  while ((e = g_variant_iter_next_value (&iter)) != NULL)
    {
      g_autoptr (GVariant) pvs = g_variant_lookup_value (e, "process_variables", G_VARIANT_TYPE ("as"));
      g_autoptr (GVariant) users = g_variant_lookup_value (e, "user_ids", G_VARIANT_TYPE ("as"));
      g_print ("%s\t%s\t%" G_GSIZE_FORMAT " PVs\t%" G_GSIZE_FORMAT " users\n", lookup_s (e, "short_id"),
               lookup_s (e, "human_readable_name"), g_variant_n_children (pvs), g_variant_n_children (users));
      g_variant_unref (e);
    }
  return 0;
}

static int
cmd_experiment_assign (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  if (argc != 4)
    return usage_error ("experiment assign needs SHORT_ID USER_ID");
  if (!rtp_dbus_server1_call_assign_user_sync (proxy, argv[2], argv[3], NULL, &error))
    return failed (error);
  return 0;
}

static int
cmd_export (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  g_autofree char *text = NULL;
  if (!rtp_dbus_server1_call_export_config_sync (proxy, &text, NULL, &error))
    return failed (error);
  fputs (text, stdout);
  return 0;
}

static int
cmd_import (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  g_autofree char *text = NULL;
  g_autoptr (GVariant) result = NULL;
  if (argc != 2)
    return usage_error ("import needs FILE");
  if (g_str_equal (argv[1], "-"))
    {
      g_autoptr (GString) all = g_string_new (NULL);
      char buf[65536];
      size_t n;
      while ((n = fread (buf, 1, sizeof buf, stdin)) > 0)
        g_string_append_len (all, buf, (gssize) n);
      text = g_string_free (g_steal_pointer (&all), FALSE);
    }
  else if (!g_file_get_contents (argv[1], &text, NULL, &error))
    return failed (error);
  if (!g_utf8_validate (text, -1, NULL))
    {
      g_printerr ("rtpctl: %s is not UTF-8 text\n", argv[1]);
      return 1;
    }
  if (!rtp_dbus_server1_call_import_config_sync (proxy, text, &result, NULL, &error))
    return failed (error);
  json_output ? print_json (result) : print_dict (result);
  return 0;
}

static int
cmd_publish (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  if (argc != 3)
    return usage_error ("publish needs PV VALUE");
  if (!rtp_dbus_server1_call_publish_value_sync (proxy, argv[1], argv[2], NULL, &error))
    return failed (error);
  return 0;
}

static int
cmd_reload (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  g_auto (GStrv) restart = NULL;
  if (!rtp_dbus_server1_call_reload_config_sync (proxy, &restart, NULL, &error))
    return failed (error);
  for (guint i = 0; restart[i] != NULL; i++)
    g_print ("restart needed for %s\n", restart[i]);
  return 0;
}

static int
cmd_alarm_list (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  g_autoptr (GVariant) alarms = NULL;
  GVariantIter iter;
  GVariant *a;

  if (argc > 3)
    return usage_error ("alarm list takes at most STATE");
  if (!rtp_dbus_server1_call_list_alarms_sync (proxy, argc == 3 ? argv[2] : "", &alarms, NULL, &error))
    return failed (error);
  if (json_output)
    {
      print_json (alarms);
      return 0;
    }
  g_variant_iter_init (&iter, alarms);
  while ((a = g_variant_iter_next_value (&iter)) != NULL)
    {
      gboolean active = FALSE;
      g_variant_lookup (a, "active", "b", &active);
      g_print ("%s\t%s\t%s\t%s\t%s\t%s%s\n", lookup_s (a, "id"), lookup_s (a, "pv_string"), lookup_s (a, "severity"),
               active ? "active" : "back in band", lookup_s (a, "since"),
               lookup_s (a, "acknowledged_by")[0] != '\0' ? "acknowledged" : "unacknowledged",
               lookup_s (a, "shelved_by")[0] != '\0' ? ", shelved" : "");
      g_variant_unref (a);
    }
  return 0;
}

static int
cmd_alarm_ack (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;

  if (argc != 3 && argc != 4)
    return usage_error ("alarm ack needs ID [COMMENT]");
  if (!rtp_dbus_server1_call_acknowledge_alarm_sync (proxy, argv[2], argc == 4 ? argv[3] : "", NULL, &error))
    return failed (error);
  return 0;
}

static int
cmd_alarm_shelve (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  char *end = NULL;
  gint64 seconds;

  if (argc != 5)
    return usage_error ("alarm shelve needs ID SECONDS REASON");
  seconds = g_ascii_strtoll (argv[3], &end, 10);
  if (argv[3][0] == '\0' || *end != '\0' || seconds <= 0)
    return usage_error ("SECONDS is a whole number above 0");
  if (!rtp_dbus_server1_call_shelve_alarm_sync (proxy, argv[2], seconds, argv[4], NULL, &error))
    return failed (error);
  return 0;
}

static int
cmd_alarm_unshelve (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;

  if (argc != 3)
    return usage_error ("alarm unshelve needs ID");
  if (!rtp_dbus_server1_call_unshelve_alarm_sync (proxy, argv[2], NULL, &error))
    return failed (error);
  return 0;
}

typedef struct {
  GMainLoop *loop;
  gboolean call_done, copy_done;
  GError *error; /* (owned) (nullable) the call's */
  GError *copy_error;
} DataState;

static void
data_check_done (DataState *st)
{
  /* a refused call ends at once; a successful one once everything was copied */
  if (st->call_done && (st->error != NULL || st->copy_done))
    g_main_loop_quit (st->loop);
}

static void
data_called (GObject *source, GAsyncResult *result, gpointer user_data)
{
  DataState *st = user_data;

  rtp_dbus_server1_call_get_data_finish (RTP_DBUS_SERVER1 (source), NULL, result, &st->error);
  st->call_done = TRUE;
  data_check_done (st);
}

static void
data_copied (GObject *source, GAsyncResult *result, gpointer user_data)
{
  DataState *st = user_data;

  g_output_stream_splice_finish (G_OUTPUT_STREAM (source), result, &st->copy_error);
  g_output_stream_flush (G_OUTPUT_STREAM (source), NULL, NULL);
  st->copy_done = TRUE;
  data_check_done (st);
}

static int
cmd_data (RtpDbusServer1 *proxy, int argc, char **argv)
{
  static const char *const string_options[][2] = {
    { "--since", "since" },
    { "--until", "until" },
    { "--operator", "operator" },
    { "--align", "align" },
    { "--time-format", "time_format" },
  };
  g_auto (GVariantDict) options = G_VARIANT_DICT_INIT (NULL);
  g_autoptr (GUnixFDList) fds = NULL;
  g_autoptr (GInputStream) in = NULL;
  g_autoptr (GOutputStream) out = NULL;
  g_autoptr (GMainLoop) loop = NULL;
  DataState st = { 0 };
  const char *pv = "";
  GError *error = NULL;
  int pipe_fds[2];
  int i = 2;

  if (argc < 2)
    return usage_error ("data needs SHORT_ID");
  if (argc > 2 && !g_str_has_prefix (argv[2], "--"))
    pv = argv[i++];
  for (; i < argc; i++)
    {
      gboolean known = FALSE;
      for (guint k = 0; k < G_N_ELEMENTS (string_options); k++)
        if (g_str_equal (argv[i], string_options[k][0]))
          {
            if (i + 1 >= argc)
              return usage_error ("an option needs a value");
            g_variant_dict_insert (&options, string_options[k][1], "s", argv[++i]);
            known = TRUE;
          }
      if (known)
        continue;
      if (g_str_equal (argv[i], "--csv") || g_str_equal (argv[i], "--tsv"))
        g_variant_dict_insert (&options, "format", "s", argv[i] + 2);
      else if (g_str_equal (argv[i], "--max-points") || g_str_equal (argv[i], "--bin-s"))
        {
          char *end = NULL;
          gint64 n;
          if (i + 1 >= argc)
            return usage_error ("an option needs a value");
          n = g_ascii_strtoll (argv[i + 1], &end, 10);
          if (argv[i + 1][0] == '\0' || *end != '\0')
            return usage_error ("--max-points and --bin-s take a whole number");
          g_variant_dict_insert (&options, g_str_equal (argv[i], "--bin-s") ? "bin_s" : "max_points", "x", n);
          i++;
        }
      else if (g_str_equal (argv[i], "--include"))
        {
          g_auto (GStrv) parts = NULL;
          if (i + 1 >= argc)
            return usage_error ("an option needs a value");
          parts = g_strsplit (argv[++i], ",", -1);
          g_variant_dict_insert_value (&options, "include", g_variant_new_strv ((const char *const *) parts, -1));
        }
      else
        return usage_error ("unknown option of data");
    }
  if (!g_unix_open_pipe (pipe_fds, FD_CLOEXEC, &error))
    return failed (error);
  fds = g_unix_fd_list_new_from_array (&pipe_fds[1], 1); /* the list owns the write end */
  in = g_unix_input_stream_new (pipe_fds[0], TRUE);
  out = g_unix_output_stream_new (STDOUT_FILENO, FALSE);
  loop = g_main_loop_new (NULL, FALSE);
  st.loop = loop;
  /* an export of a long window takes as long as it takes */
  g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (proxy), G_MAXINT);
  rtp_dbus_server1_call_get_data (proxy, argv[1], pv, g_variant_dict_end (&options), g_variant_new_handle (0), fds,
                                  NULL, data_called, &st);
  g_clear_object (&fds); /* our copy of the write end closes once the message is sent */
  g_output_stream_splice_async (out, in, G_OUTPUT_STREAM_SPLICE_CLOSE_SOURCE, G_PRIORITY_DEFAULT, NULL, data_copied,
                                &st);
  g_main_loop_run (loop);
  if (st.error != NULL)
    {
      g_clear_error (&st.copy_error);
      return failed (st.error);
    }
  if (st.copy_error != NULL)
    return failed (st.copy_error);
  return 0;
}

static void
print_snapshot (GVariant *snapshot)
{
  g_autoptr (GVariant) values = g_variant_lookup_value (snapshot, "values", G_VARIANT_TYPE_VARDICT);
  GVariantIter iter;
  const char *pv;
  GVariant *value;

  g_print ("%s\t%s\ttaken %s by %s%s%s\n", lookup_s (snapshot, "id"), lookup_s (snapshot, "name"),
           lookup_s (snapshot, "taken_at"), lookup_s (snapshot, "taken_by"),
           lookup_s (snapshot, "at")[0] != '\0' ? ", values of " : "", lookup_s (snapshot, "at"));
  if (values == NULL)
    return;
  g_variant_iter_init (&iter, values);
  while (g_variant_iter_next (&iter, "{&sv}", &pv, &value))
    {
      const char *text = g_variant_is_of_type (value, G_VARIANT_TYPE_STRING) ? g_variant_get_string (value, NULL) : "";
      g_print ("  %s\t%s\n", pv, text[0] != '\0' ? text : "(no value)");
      g_variant_unref (value);
    }
}

static int
cmd_snapshot (RtpDbusServer1 *proxy, int argc, char **argv)
{
  GError *error = NULL;
  g_autoptr (GVariant) out = NULL;
  const char *sub = argv[1];

  if (g_str_equal (sub, "take"))
    {
      const char *comment = "", *at = "";
      if (argc < 4)
        return usage_error ("snapshot take needs SHORT_ID NAME");
      for (int i = 4; i < argc; i++)
        {
          if (i + 1 < argc && g_str_equal (argv[i], "--comment"))
            comment = argv[++i];
          else if (i + 1 < argc && g_str_equal (argv[i], "--at"))
            at = argv[++i];
          else
            return usage_error ("snapshot take takes --comment TEXT and --at TIME");
        }
      if (!rtp_dbus_server1_call_take_snapshot_sync (proxy, argv[2], argv[3], comment, at, &out, NULL, &error))
        return failed (error);
    }
  else if (g_str_equal (sub, "list"))
    {
      GVariantIter iter;
      GVariant *s;
      if (argc != 3)
        return usage_error ("snapshot list needs SHORT_ID");
      if (!rtp_dbus_server1_call_list_snapshots_sync (proxy, argv[2], &out, NULL, &error))
        return failed (error);
      if (json_output)
        {
          print_json (out);
          return 0;
        }
      g_variant_iter_init (&iter, out);
      while ((s = g_variant_iter_next_value (&iter)) != NULL)
        {
          print_snapshot (s);
          g_variant_unref (s);
        }
      return 0;
    }
  else if (g_str_equal (sub, "show"))
    {
      if (argc != 4)
        return usage_error ("snapshot show needs SHORT_ID ID");
      if (!rtp_dbus_server1_call_get_snapshot_sync (proxy, argv[2], argv[3], &out, NULL, &error))
        return failed (error);
    }
  else if (g_str_equal (sub, "restore"))
    {
      g_autoptr (GPtrArray) pvs = g_ptr_array_new ();
      gboolean dry_run = FALSE;
      GVariantIter iter;
      GVariant *r;
      int refused = 0;
      if (argc < 4)
        return usage_error ("snapshot restore needs SHORT_ID ID");
      for (int i = 4; i < argc; i++)
        {
          if (g_str_equal (argv[i], "--dry-run"))
            dry_run = TRUE;
          else
            g_ptr_array_add (pvs, argv[i]);
        }
      g_ptr_array_add (pvs, NULL);
      if (!rtp_dbus_server1_call_restore_snapshot_sync (proxy, argv[2], argv[3], (const char *const *) pvs->pdata,
                                                        dry_run, &out, NULL, &error))
        return failed (error);
      if (json_output)
        {
          print_json (out);
          return 0;
        }
      g_variant_iter_init (&iter, out);
      while ((r = g_variant_iter_next_value (&iter)) != NULL)
        {
          const char *outcome = lookup_s (r, "outcome");
          refused += g_str_equal (outcome, "refused") || g_str_equal (outcome, "failed");
          g_print ("%s\t%s%s%s\n", lookup_s (r, "pv_string"), outcome, lookup_s (r, "reason")[0] != '\0' ? "\t" : "",
                   lookup_s (r, "reason"));
          g_variant_unref (r);
        }
      return refused > 0 ? 1 : 0;
    }
  else
    return usage_error ("snapshot take|list|show|restore");
  json_output ? print_json (out) : print_snapshot (out);
  return 0;
}

/* argv[0] is the command, argv[1] its subcommand where it has one. */
typedef int (*CommandFunc) (RtpDbusServer1 *proxy, int argc, char **argv);

static const struct {
  const char *name;
  const char *sub; /* (nullable) */
  CommandFunc run;
} commands[] = {
  { "status", NULL, cmd_status },
  { "user", "list", cmd_user_list },
  { "user", "add", cmd_user_add },
  { "user", "reset-password", cmd_user_reset_password },
  { "user", "delete", cmd_user_delete },
  { "pv", "list", cmd_pv_list },
  { "pv", "add", cmd_pv_add },
  { "pv", "delete", cmd_pv_delete },
  { "experiment", "list", cmd_experiment_list },
  { "experiment", "assign", cmd_experiment_assign },
  { "export", NULL, cmd_export },
  { "import", NULL, cmd_import },
  { "publish", NULL, cmd_publish },
  { "reload", NULL, cmd_reload },
  { "alarm", "list", cmd_alarm_list },
  { "alarm", "ack", cmd_alarm_ack },
  { "alarm", "shelve", cmd_alarm_shelve },
  { "alarm", "unshelve", cmd_alarm_unshelve },
  { "data", NULL, cmd_data },
  { "snapshot", "take", cmd_snapshot },
  { "snapshot", "list", cmd_snapshot },
  { "snapshot", "show", cmd_snapshot },
  { "snapshot", "restore", cmd_snapshot },
};

static int
run (RtpDbusServer1 *proxy, int argc, char **argv)
{
  const char *cmd = argc > 0 ? argv[0] : NULL;
  const char *sub = argc > 1 ? argv[1] : NULL;

  if (cmd == NULL)
    return usage_error ("no command");
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (cmd, commands[i].name) && (commands[i].sub == NULL || g_strcmp0 (sub, commands[i].sub) == 0))
      return commands[i].run (proxy, argc, argv);
  return usage_error ("unknown command");
}

int
main (int argc, char **argv)
{
  GBusType bus = G_BUS_TYPE_SESSION;
  g_autoptr (GPtrArray) rest = g_ptr_array_new ();
  g_autoptr (RtpDbusServer1) proxy = NULL;
  GError *error = NULL;

  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--system"))
        bus = G_BUS_TYPE_SYSTEM;
      else if (g_str_equal (argv[i], "--session"))
        bus = G_BUS_TYPE_SESSION;
      else if (g_str_equal (argv[i], "--json"))
        json_output = TRUE;
      else if (g_str_equal (argv[i], "--help") || g_str_equal (argv[i], "-h"))
        {
          g_print ("%s", usage);
          return 0;
        }
      else
        g_ptr_array_add (rest, argv[i]);
    }
  if (rest->len >= 1 && g_str_equal (g_ptr_array_index (rest, 0), "secret"))
    {
      char buf[4096];
      size_t n;
      if (rest->len != 3 || !g_str_equal (g_ptr_array_index (rest, 1), "set"))
        return usage_error ("secret set needs NAME");
      n = fread (buf, 1, sizeof buf - 1, stdin);
      buf[n] = '\0';
      if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
      if (n == 0)
        return usage_error ("the secret is read from standard input, which was empty");
      if (!rtp_secrets_store (g_ptr_array_index (rest, 2), buf, &error))
        return failed (error);
      return 0;
    }
  rtp_error_register_dbus_names ();
  proxy = rtp_dbus_server1_proxy_new_for_bus_sync (bus, G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START_AT_CONSTRUCTION,
                                                   "org.realtimeplot.Server1", "/org/realtimeplot/Server1", NULL,
                                                   &error);
  if (proxy == NULL)
    return failed (error);
  /* a generous timeout: imports of big files take a while */
  g_dbus_proxy_set_default_timeout (G_DBUS_PROXY (proxy), 300000);
  return run (proxy, (int) rest->len, (char **) rest->pdata);
}
