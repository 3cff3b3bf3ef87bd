/*
 * The addresses: listen (where clients come in), upstream (the https URL
 * of the Gemini API, split into host, port and path prefix) and
 * upstream_ca_file.  Names are only checked for their form here; they are
 * looked up when binding (master.c) and by resolve.c.
 *
 * Called by config.c's cfg_build().  No global state, no locks.
 */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>

#include "config.h"
#include "config_int.h"

#define CFG_HTTPS	"https://"	/* the only scheme upstream may have */
#define CFG_HOST_MAX	253		/* longest DNS name, dots included */

static int	 cfg_port(const char *, int, char *, size_t);
static int	 cfg_hostname_ok(const char *);
static int	 cfg_v6_ok(const char *);
static int	 cfg_upstream_host(struct cfg_parse *, const char *, char *);
static int	 cfg_upstream_path(struct cfg_parse *, const char *,
		    const char *);
static int	 cfg_upstream_bad(struct cfg_parse *, const char *, int);

/*
 * A decimal port 1-65535 (0 too when zero_ok: any free port), written
 * back without leading zeros.
 */
static int
cfg_port(const char *s, int zero_ok, char *out, size_t outlen)
{
	long	 n = 0;
	size_t	 i;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= sizeof("65535") - 1)
			return -1;
		n = n * 10 + (s[i] - '0');
	}
	if (i == 0 || n < (zero_ok ? 0 : 1) || n > 65535)
		return -1;
	(void)snprintf(out, outlen, "%ld", n);
	return 0;
}

/* A host name or IPv4 address: letters, digits, '.', '-', '_'. */
static int
cfg_hostname_ok(const char *s)
{
	const char	*c;

	if (s[0] == '\0' || strlen(s) > CFG_HOST_MAX)
		return 0;
	for (c = s; *c != '\0'; c++)
		if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		    (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' ||
		    *c == '_'))
			return 0;
	return 1;
}

/* An IPv6 address, with an optional "%zone". */
static int
cfg_v6_ok(const char *s)
{
	struct in6_addr	 a;
	char		 buf[INET6_ADDRSTRLEN + 1];
	size_t		 len;

	len = strcspn(s, "%");
	if (len == 0 || len >= sizeof(buf) || (s[len] == '%' &&
	    (s[len + 1] == '\0' || !cfg_hostname_ok(s + len + 1))))
		return 0;
	(void)strlcpy(buf, s, len + 1);
	return inet_pton(AF_INET6, buf, &a) == 1;
}

/*
 * "host:port", "[v6]:port", "*:port" or ":port" (the last two: every
 * address, listen_host "*").  Names are resolved when binding, not here.
 */
int
cfg_listen(struct cfg_parse *p, const cJSON *v)
{
	struct config	*cfg = p->cfg;
	const char	*s, *colon, *rb;
	char		 host[256], got[96];
	size_t		 hlen;

	if ((s = cfg_string(p, v, "listen", CFG_DEF_LISTEN,
	    "a string \"host:port\"")) == NULL)
		return -1;
	if (strlcpy(cfg->listen, s, sizeof(cfg->listen)) >=
	    sizeof(cfg->listen))
		return cfg_err(p, "listen", "too long");
	if (s[0] == '[') {
		if ((rb = strchr(s, ']')) == NULL || rb[1] != ':')
			goto bad;
		hlen = rb - s - 1;
		colon = rb + 1;
		if (hlen >= sizeof(host))
			goto bad;
		(void)strlcpy(host, s + 1, hlen + 1);
		if (!cfg_v6_ok(host))
			return cfg_err(p, "listen", "%s is not an IPv6 address",
			    cfg_quote(host, got, sizeof(got)));
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			goto bad;
		hlen = colon - s;
		if (hlen >= sizeof(host))
			goto bad;
		(void)strlcpy(host, s, hlen + 1);
		if (strchr(host, ':') != NULL)
			return cfg_err(p, "listen", "an IPv6 address must be "
			    "in brackets, as in \"[::1]:48888\" (got %s)",
			    cfg_quote(s, got, sizeof(got)));
		if (host[0] == '\0')
			(void)strlcpy(host, "*", sizeof(host));
		else if (strcmp(host, "*") != 0 && !cfg_hostname_ok(host))
			goto bad;
	}
	if (cfg_port(colon + 1, 1, cfg->listen_port,
	    sizeof(cfg->listen_port)) == -1)
		return cfg_err(p, "listen", "port must be a number from 1 to "
		    "65535, or 0 for any free one (got %s)",
		    cfg_quote(s, got, sizeof(got)));
	(void)strlcpy(cfg->listen_host, host, sizeof(cfg->listen_host));
	return 0;
bad:
	return cfg_err(p, "listen", "must be \"host:port\", \"[v6addr]:port\", "
	    "\"*:port\" or \":port\" (got %s)", cfg_quote(s, got, sizeof(got)));
}

/*
 * "https://host[:port][/prefix]".  Plain http is refused: the keys would
 * cross the network in clear.  upstream_host holds an IPv6 address without
 * its brackets, ready for getaddrinfo(); user information is refused and
 * never echoed, since it would be a credential.
 */
int
cfg_upstream(struct cfg_parse *p, const cJSON *v)
{
	const char	*s, *a;
	char		 auth[300], got[96];
	size_t		 alen;

	if ((s = cfg_string(p, v, "upstream", CFG_DEF_UPSTREAM,
	    "an https URL")) == NULL)
		return -1;
	if (strncasecmp(s, CFG_HTTPS, sizeof(CFG_HTTPS) - 1) != 0)
		return cfg_err(p, "upstream", "must be an https URL (got %s)",
		    strchr(s, '@') != NULL ? "a URL with user information" :
		    cfg_quote(s, got, sizeof(got)));
	a = s + sizeof(CFG_HTTPS) - 1;
	alen = strcspn(a, "/?#");
	if (memchr(a, '@', alen) != NULL)
		return cfg_err(p, "upstream", "must not hold user information");
	if (strpbrk(a, "?#") != NULL)
		return cfg_err(p, "upstream", "must not have a query or a "
		    "fragment (got %s)", cfg_quote(s, got, sizeof(got)));
	if (alen == 0 || alen >= sizeof(auth))
		return cfg_upstream_bad(p, s, 0);
	(void)strlcpy(auth, a, alen + 1);
	if (cfg_upstream_host(p, s, auth) == -1 ||
	    cfg_upstream_path(p, s, a + alen) == -1)
		return -1;
	return 0;
}

/*
 * The URL's authority: "host", "host:port", "[v6]" or "[v6]:port", into
 * upstream_host (without brackets) and upstream_port.  s is the whole URL,
 * for messages.
 */
static int
cfg_upstream_host(struct cfg_parse *p, const char *s, char *auth)
{
	struct config	*cfg = p->cfg;
	char		*rb, *pc;
	int		 v6;

	(void)strlcpy(cfg->upstream_port, CFG_DEF_UPSTREAM_PORT,
	    sizeof(cfg->upstream_port));
	if (auth[0] == '[') {
		if ((rb = strchr(auth, ']')) == NULL)
			return cfg_upstream_bad(p, s, 0);
		if (rb[1] == ':') {
			if (cfg_port(rb + 2, 0, cfg->upstream_port,
			    sizeof(cfg->upstream_port)) == -1)
				return cfg_upstream_bad(p, s, 1);
		} else if (rb[1] != '\0')
			return cfg_upstream_bad(p, s, 0);
		*rb = '\0';
		auth++;
		if (!cfg_v6_ok(auth))
			return cfg_upstream_bad(p, s, 0);
	} else {
		if ((pc = strchr(auth, ':')) != NULL) {
			if (cfg_port(pc + 1, 0, cfg->upstream_port,
			    sizeof(cfg->upstream_port)) == -1)
				return cfg_upstream_bad(p, s, 1);
			*pc = '\0';
		}
		if (!cfg_hostname_ok(auth))
			return cfg_upstream_bad(p, s, 0);
	}
	(void)strlcpy(cfg->upstream_host, auth, sizeof(cfg->upstream_host));
	/* The Host header the upstream is sent: brackets for IPv6, the
	 * port unless it is the default. */
	v6 = strchr(cfg->upstream_host, ':') != NULL;
	if (strcmp(cfg->upstream_port, "443") == 0)
		(void)snprintf(cfg->upstream_authority,
		    sizeof(cfg->upstream_authority), v6 ? "[%s]" : "%s",
		    cfg->upstream_host);
	else
		(void)snprintf(cfg->upstream_authority,
		    sizeof(cfg->upstream_authority), v6 ? "[%s]:%s" : "%s:%s",
		    cfg->upstream_host, cfg->upstream_port);
	return 0;
}

/*
 * The path prefix at slash, without trailing slashes since paths are
 * appended to it, and the URL as kept: up to the end of that prefix.
 */
static int
cfg_upstream_path(struct cfg_parse *p, const char *s, const char *slash)
{
	struct config	*cfg = p->cfg;
	const char	*c;
	size_t		 plen, ulen;

	plen = strlen(slash);
	while (plen > 0 && slash[plen - 1] == '/')
		plen--;
	if (plen >= sizeof(cfg->upstream_prefix))
		return cfg_err(p, "upstream", "path prefix too long (at most "
		    "%zu bytes)", sizeof(cfg->upstream_prefix) - 1);
	for (c = slash; c < slash + plen; c++)
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
			return cfg_upstream_bad(p, s, 0);
	(void)strlcpy(cfg->upstream_prefix, slash, plen + 1);
	ulen = (size_t)(slash - s) + plen;
	if (ulen >= sizeof(cfg->upstream))
		return cfg_err(p, "upstream", "too long");
	(void)strlcpy(cfg->upstream, s, ulen + 1);
	return 0;
}

/* What a malformed upstream is told; port: it is the port that is wrong. */
static int
cfg_upstream_bad(struct cfg_parse *p, const char *s, int port)
{
	char	 got[96];

	if (port)
		return cfg_err(p, "upstream", "port must be a number from 1 to "
		    "65535 (got %s)", cfg_quote(s, got, sizeof(got)));
	return cfg_err(p, "upstream", "must be \"https://host[:port][/prefix]\" "
	    "(got %s)", cfg_quote(s, got, sizeof(got)));
}

/*
 * Checked now, so that -t and a reload catch a missing file early.  Opened
 * without blocking: a FIFO named here would otherwise hang -t, or the
 * master in a reload, until someone writes to it.
 */
int
cfg_ca_file(struct cfg_parse *p, const cJSON *v)
{
	struct config	*cfg = p->cfg;
	struct stat	 st;
	int		 fd;

	if (cfg_path(p, v, "upstream_ca_file", "", cfg->upstream_ca_file,
	    sizeof(cfg->upstream_ca_file)) == -1)
		return -1;
	if (cfg->upstream_ca_file[0] == '\0')
		return 0;
	if ((fd = open(cfg->upstream_ca_file,
	    O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1)
		return cfg_err(p, "upstream_ca_file", "%s: %s",
		    cfg->upstream_ca_file, strerror(errno));
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		return cfg_err(p, "upstream_ca_file", "%s: not a regular file",
		    cfg->upstream_ca_file);
	}
	close(fd);
	return 0;
}
