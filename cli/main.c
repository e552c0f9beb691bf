/* marginctl: the command-line client. Commands are a table; each lives in
 * cmd_<name>.c (see cli.h). */
#include "cli.h"
#include "lib/mg_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cli_globals_t cli_globals;

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} commands[] = {
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

static void usage(FILE *f)
{
	fprintf(f, "usage: marginctl [--url http://HOST:PORT] [--api-key KEY] COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\nmarginctl COMMAND --help for the options of each.\n"
		   "--url and --api-key default to $MARGIN_URL and $MARGIN_API_KEY.\n");
}

int main(int argc, char **argv)
{
	if (mg_log_init_from_env() < 0)
		fprintf(stderr, "marginctl: ignoring bad MARGIN_LOG_LEVEL\n");
	cli_globals.url = getenv("MARGIN_URL");
	if (cli_globals.url == NULL || *cli_globals.url == '\0')
		cli_globals.url = "http://127.0.0.1:8080";
	cli_globals.api_key = getenv("MARGIN_API_KEY");
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("marginctl %s\n", MARGIN_VERSION);
			return 0;
		}
		if ((strcmp(argv[i], "--url") == 0 || strcmp(argv[i], "--api-key") == 0) && i + 1 < argc) {
			if (argv[i][2] == 'u')
				cli_globals.url = argv[i + 1];
			else
				cli_globals.api_key = argv[i + 1];
			i++;
			continue;
		}
		fprintf(stderr, "marginctl: unknown option %s\n", argv[i]);
		usage(stderr);
		return 2;
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	for (size_t k = 0; k < N_COMMANDS; k++)
		if (strcmp(argv[i], commands[k].name) == 0)
			return commands[k].fn(argc - i, argv + i);
	fprintf(stderr, "marginctl: unknown command '%s'\n", argv[i]);
	usage(stderr);
	return 2;
}
