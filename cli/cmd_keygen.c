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
#include "lib/mg_settings.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

typedef struct keygen_opts {
	const char *name, *dir;	/* borrowed from the config */
	bool force;
} keygen_opts_t;

#define KG(field) MG_SETTING_AT(keygen_opts_t, field)
static const mg_setting_t keygen_settings[] = {
	{ .section = "keygen", .key = "name", .arg = "NAME", .flags = MG_SETTING_OPERAND, KG(name) },
	{ .flag = "out", .short_flag = 'o', .section = "keygen", .key = "out", .arg = "DIR",
	  .help = "the directory for NAME.key and NAME.pub (created)", KG(dir) },
	{ .flag = "force", .short_flag = 'f', .section = "keygen", .key = "force", .type = MG_SETTING_BOOL,
	  .set = "yes", .help = "overwrite existing files", KG(force) },
};

static const mg_settings_spec_t keygen_spec = {
	.prog = "marginctl keygen",
	.synopsis = "NAME -o DIR [--force]\n",
	.intro = "Writes DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub (Z85 text).\n",
	.no_config = true,
	.settings = keygen_settings,
	.n = sizeof(keygen_settings) / sizeof(keygen_settings[0]),
};

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

/* Writes the key pair: 0; 2 for a bad name, 1 when it cannot (said). */
static int keygen(const char *name, const char *dir, bool force)
{
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

int cmd_keygen(int argc, char **argv)
{
	keygen_opts_t o = { 0 };
	mg_config_t *cfg = mg_config_new();
	int r = cfg == NULL ? -ENOMEM : mg_settings_parse_into(&keygen_spec, cfg, argc, argv, &o);
	if (r == 0 && (o.name == NULL || o.dir == NULL)) {
		mg_settings_usage(&keygen_spec, stderr);
		r = -EINVAL;
	}
	if (cfg == NULL)
		fprintf(stderr, "marginctl keygen: out of memory\n");
	if (r == 0)
		r = keygen(o.name, o.dir, o.force);
	else
		r = r == 1 ? 0 : r == -EINVAL ? 2 : 1;
	mg_config_destroy(&cfg);
	return r;
}
