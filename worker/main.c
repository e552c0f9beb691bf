/* margin-worker: a worker node (serve) and offline tools over the same
 * model runtime. Subcommands are a table; each lives in cmd_<name>.c. */
#include "cmds.h"
#include "mg_log.h"

#include <stdio.h>
#include <string.h>

/* Weak while the tree grows: a subcommand whose module is not built yet
 * is listed as unavailable instead of breaking the link. */
#pragma weak cmd_serve
#pragma weak cmd_run
#pragma weak cmd_tokenize
#pragma weak cmd_inspect
#pragma weak cmd_synth
#pragma weak cmd_bench

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} commands[] = {
	{ "serve", cmd_serve, "connect to margind and run shards" },
	{ "run", cmd_run, "generate text from a prompt" },
	{ "tokenize", cmd_tokenize, "print the token ids of a text" },
	{ "inspect", cmd_inspect, "print a GGUF file's metadata and tensors" },
	{ "synth", cmd_synth, "write a synthetic model preset as GGUF" },
	{ "bench", cmd_bench, "measure prefill/decode throughput against this machine's limits" },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: margin-worker COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (commands[i].fn != NULL)
			fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\nmargin-worker COMMAND --help for the options of each.\n");
}

int main(int argc, char **argv)
{
	if (mg_log_init_from_env() < 0)
		fprintf(stderr, "margin-worker: ignoring bad MARGIN_LOG_LEVEL\n");
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("margin-worker %s\n", MARGIN_VERSION);
		return 0;
	}
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(argv[1], commands[i].name) == 0 && commands[i].fn != NULL)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "margin-worker: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
