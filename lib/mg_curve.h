/* mg_curve: reading CURVE key files, the same way in margind and the worker.
 *
 * A key file is what `marginctl keygen` writes: 40 Z85 characters (a 32-byte
 * key) and a newline. Blank lines and lines starting with `#` are allowed
 * around it, and white space around the key; anything else is refused. czmq's
 * zcert files (`curve` / `public-key = "..."` sections) are not read: margin
 * never writes them, and the error says so.
 *
 * A key named in the settings (margind's secret, the worker's secret and
 * margind's public key) is loaded with mg_curve_key_load: a relative name is
 * looked up in $CREDENTIALS_DIRECTORY first (systemd LoadCredential=, where
 * the unit files put the secret keys), then as given (relative to the
 * working directory); an absolute path is read as given. Files found by
 * listing a directory (margind's allowed worker keys) are read as they are
 * with mg_curve_key_read. Any thread may call these; they do not log. */
#ifndef MG_CURVE_H
#define MG_CURVE_H

#include <stdbool.h>
#include <stddef.h>

#define MG_CURVE_KEY_LEN 40	/* Z85 characters of a 32-byte key */
#define MG_CURVE_KEY_BYTES 32

/* Whether z85 is a key: exactly 40 characters that decode as Z85. */
bool mg_curve_key_valid(const char *z85);

/* Reads the key file path as given. ret_z85 gets the key and a NUL,
 * ret_bin (may be NULL) its 32 decoded bytes; both are written only on
 * success. -errno when the file cannot be opened (-ENOENT, -EACCES: err
 * names the path tried), -EBADMSG when it holds no key, a line that is not
 * one, or a second key (err: "FILE:LINE: ..."). */
int mg_curve_key_read(const char *path, char ret_z85[MG_CURVE_KEY_LEN + 1],
		      unsigned char ret_bin[MG_CURVE_KEY_BYTES], char *err, size_t errlen);

/* mg_curve_key_read of the key file name, found as this header says. */
int mg_curve_key_load(const char *name, char ret_z85[MG_CURVE_KEY_LEN + 1],
		      unsigned char ret_bin[MG_CURVE_KEY_BYTES], char *err, size_t errlen);

#endif
