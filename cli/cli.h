/* marginctl: shared declarations of the subcommands.
 *
 * Each command is `int cmd_<name>(int argc, char **argv)` (argv[0] is the
 * command name) returning the exit status: 0 success, 2 bad usage, 1 any
 * other failure with the reason on stderr. main.c holds the table; add a
 * command by writing cmd_<name>.c, declaring it here, adding one table row
 * and the file to cli/meson.build. */
#ifndef CLI_H
#define CLI_H

/* Global options (before the command), for the HTTP commands. */
typedef struct cli_globals {
	const char *url;	/* --url, $MARGIN_URL, default http://127.0.0.1:8080 */
	const char *api_key;	/* --api-key, $MARGIN_API_KEY, or NULL */
} cli_globals_t;

extern cli_globals_t cli_globals;

int cmd_keygen(int argc, char **argv);
int cmd_job(int argc, char **argv);
/* cmd_http.c: the HTTP API commands (docs/api.md) */
int cmd_submit(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_results(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_models(int argc, char **argv);
/* cmd_cost.c, cmd_economics.c: the metering reports (docs/economics.md) */
int cmd_cost(int argc, char **argv);
int cmd_economics(int argc, char **argv);
/* cmd_prices.c: the entries of the price tables */
int cmd_prices(int argc, char **argv);
/* cmd_plan.c: capacity planning (docs/economics.md) */
int cmd_plan(int argc, char **argv);

#endif
