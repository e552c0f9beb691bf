/* marginctl: the command-line client. Commands are a table; each lives in
 * cmd_<name>.c (see cli.h). */
#include "cli.h"
#include "lib/mg_log.h"
#include "lib/mg_settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cli_globals_t cli_globals;

static const mg_settings_command_t commands[] = {
	{ "keygen", cmd_keygen, "write a CURVE key pair: NAME.key (secret) and NAME.pub" },
	{ "submit", cmd_submit, "upload a JSONL batch file and create a batch (--wait: follow it)" },
	{ "status", cmd_status, "a batch's status and counts; without ID, the server's" },
	{ "wait", cmd_wait, "follow a batch to its end with a progress bar" },
	{ "results", cmd_results, "download a finished batch's output (-o FILE) and errors" },
	{ "cancel", cmd_cancel, "cancel a batch" },
	{ "list", cmd_list, "batches, newest first" },
	{ "models", cmd_models, "models served by the connected workers" },
	{ "cost", cmd_cost, "what a batch's calls cost: ledger report, what-if, sale margin, break-even, chart" },
	{ "economics", cmd_economics, "the price-war table and check (margin before/after a cut), cost charts, offline" },
	{ "prices", cmd_prices, "the entries of the price tables: prices, cached and batch prices, sources, dates" },
	{ "plan", cmd_plan, "capacity: nodes of each profile for a daily workload within a deadline, cost vs APIs" },
	{ "job", cmd_job, "submit, watch and read jobs through a local margind's control socket" },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

#define GLOBAL(field) MG_SETTING_AT(cli_globals_t, field)
static const mg_setting_t main_settings[] = {
	{ .flag = "url", .section = "marginctl", .key = "url", .arg = "URL",
	  .help = "margind's HTTP API, http://HOST:PORT (default $MARGIN_URL or http://127.0.0.1:8080)",
	  GLOBAL(url) },
	{ .flag = "api-key", .section = "marginctl", .key = "api_key", .arg = "KEY",
	  .help = "the API key (default $MARGIN_API_KEY)", GLOBAL(api_key) },
};

static const mg_settings_spec_t main_spec = {
	.prog = "marginctl",
	.synopsis = "[--url http://HOST:PORT] [--api-key KEY] COMMAND [OPTIONS]\n",
	.version = MARGIN_VERSION,
	.no_config = true,
	.settings = main_settings,
	.n = sizeof(main_settings) / sizeof(main_settings[0]),
	.commands = commands,
	.n_commands = N_COMMANDS,
};

int main(int argc, char **argv)
{
	if (mg_log_init_from_env() < 0)
		fprintf(stderr, "marginctl: ignoring bad MARGIN_LOG_LEVEL\n");
	cli_globals.url = getenv("MARGIN_URL");
	if (cli_globals.url == NULL || *cli_globals.url == '\0')
		cli_globals.url = "http://127.0.0.1:8080";
	cli_globals.api_key = getenv("MARGIN_API_KEY");
	const mg_settings_spec_t *spec = &main_spec;
	mg_config_t *cfg = mg_config_new();
	int i = argc, r = cfg == NULL ? -ENOMEM : mg_settings_parse_head_into(spec, cfg, argc, argv, &cli_globals, &i);
	if (cfg == NULL)
		fprintf(stderr, "marginctl: out of memory\n");
	if (r == 0 && i >= argc) {
		mg_settings_usage(spec, stderr);
		r = -EINVAL;
	}
	const mg_settings_command_t *cmd = r == 0 ? mg_settings_command_find(spec, argv[i]) : NULL;
	if (cmd != NULL) {
		r = cmd->fn(argc - i, argv + i);
		mg_config_destroy(&cfg);	/* after: cli_globals borrows from it */
		return r;
	}
	if (r == 0) {
		fprintf(stderr, "marginctl: unknown command '%s'\n", argv[i]);
		mg_settings_usage(spec, stderr);
		r = -EINVAL;
	}
	mg_config_destroy(&cfg);
	return r == 1 ? 0 : r == -EINVAL ? 2 : 1;
}
