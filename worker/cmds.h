/* Subcommands of margin-worker. Each takes argc/argv after the subcommand
 * name (argv[0] is the subcommand) and returns the process exit status:
 * 0 success, 2 bad usage, 1 any other failure (reason on stderr). */
#ifndef CMDS_H
#define CMDS_H

int cmd_serve(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_embed(int argc, char **argv);

#endif
