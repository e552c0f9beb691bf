/* marginctl keygen NAME -o DIR: a CURVE key pair for a worker or the daemon.
 *
 *   DIR/NAME.key  the secret key, 40 Z85 characters + "\n", mode 0600
 *   DIR/NAME.pub  the public key, 40 Z85 characters + "\n", mode 0644
 *
 * Z85 text as zmq_curve_keypair() gives it. Put NAME.pub into margind's
 * --curve-allow directory (workers) or hand it to workers as
 * --curve-server (the daemon's). Existing files are never overwritten
 * unless --force. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: marginctl keygen NAME -o DIR [--force]\n"
		   "  writes DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub (Z85 text)\n");
}

static bool valid_name(const char *n)
{
	if (*n == '\0' || *n == '.' || strlen(n) > 100)
		return false;
	for (; *n; n++)
		if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') || (*n >= '0' && *n <= '9') ||
		      *n == '_' || *n == '-' || *n == '.' || *n == '@'))
			return false;
	return true;
}

static int write_key(const char *path, const char *z85, mode_t mode, bool force)
{
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL);
	int fd = open(path, flags, mode);
	if (fd < 0)
		return -errno;
	/* The mode of open() is filtered by the umask and ignored for an
	 * existing file: set it explicitly. */
	if (fchmod(fd, mode) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	char line[42];
	memcpy(line, z85, 40);
	line[40] = '\n';
	ssize_t w = write(fd, line, 41);
	int e = w == 41 ? 0 : (w < 0 ? errno : EIO);
	if (fsync(fd) < 0 && e == 0)
		e = errno;
	if (close(fd) < 0 && e == 0)
		e = errno;
	return -e;
}

int cmd_keygen(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "out", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	bool force = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "o:fh", opts, NULL)) != -1) {
		switch (c) {
		case 'o': dir = optarg; break;
		case 'f': force = true; break;
		case 'h': usage(stdout); return 0;
		default:
			fprintf(stderr, "marginctl keygen: bad option %s\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1 || dir == NULL) {
		usage(stderr);
		return 2;
	}
	const char *name = argv[optind];
	if (!valid_name(name)) {
		fprintf(stderr, "marginctl keygen: name \"%s\": expected letters, digits, _ - . @ (not starting with .)\n",
			name);
		return 2;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "marginctl keygen: cannot create %s: %s\n", dir, strerror(errno));
		return 1;
	}
	char pub[41], sec[41];
	if (zmq_curve_keypair(pub, sec) < 0) {
		fprintf(stderr, "marginctl keygen: zmq_curve_keypair: %s (libzmq without CURVE?)\n",
			zmq_strerror(zmq_errno()));
		return 1;
	}
	char kpath[PATH_MAX], ppath[PATH_MAX];
	snprintf(kpath, sizeof(kpath), "%s/%s.key", dir, name);
	snprintf(ppath, sizeof(ppath), "%s/%s.pub", dir, name);
	if (!force && (access(kpath, F_OK) == 0 || access(ppath, F_OK) == 0)) {
		fprintf(stderr, "marginctl keygen: %s or %s exists; not overwriting a key (use --force)\n",
			kpath, ppath);
		return 1;
	}
	int r = write_key(kpath, sec, 0600, force);
	memset(sec, 0, sizeof(sec));
	if (r < 0) {
		fprintf(stderr, "marginctl keygen: %s: %s\n", kpath, strerror(-r));
		return 1;
	}
	r = write_key(ppath, pub, 0644, force);
	if (r < 0) {
		fprintf(stderr, "marginctl keygen: %s: %s\n", ppath, strerror(-r));
		unlink(kpath);
		return 1;
	}
	printf("%s\n", pub);
	return 0;
}
