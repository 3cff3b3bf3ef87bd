/*
 * The upstream's addresses, for upstream.c when it opens a connection.
 *
 * getaddrinfo() cannot be bounded by a deadline and a slow or dead
 * resolver would hold a worker, and its client, for as long as the
 * resolver's own retries take (10 s and more with glibc's defaults).  So
 * names are looked up with getaddrinfo_a(), in the background, and:
 *
 *  - an answer is kept resolver_valid_s seconds (nginx's resolver
 *    "valid=", 30 s by default: getaddrinfo says nothing of DNS TTLs);
 *  - once it is older, the next connection starts a new lookup in the
 *    background and goes on with the old addresses, which are replaced
 *    when the lookup answers (so a resolver that fails, or stops
 *    answering, leaves the proxy on the last addresses it had);
 *  - only with no addresses at all does a connection wait for a lookup,
 *    at most until its deadline (upstream_timeout_s), and not at all once
 *    its client has gone.
 *
 * One cache per process (a worker talks to one upstream; test_key too).
 * IP literals are never looked up.  (glibc's lookup thread, and its
 * stack, cost a worker some 30 KiB of memory of its own once it has
 * looked up a name: a resolver process of the pool's, writing addresses
 * into shared memory, would save that.)  No locks; glibc runs the lookup in a
 * thread of its own, which touches nothing but the request below.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <bsd/string.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "resolve.h"
#include "util.h"

#define RESOLVE_SLICE_MS	50	/* how often a wait looks at the client */

static struct {
	char		 host[256];
	char		 port[16];
	struct addrinfo	 hints;
	struct addrinfo	*ai;		/* the addresses in use, or NULL */
	int64_t		 fresh_until;	/* mono ms: look up again after */
	struct gaicb	 req;		/* the lookup under way */
	int		 pending;
	int		 numeric;	/* 1: an IP literal; -1: a name */
} rs;

/* Did the client (fd, -1: none) hang up? */
static int
resolve_gone(int fd)
{
	struct pollfd	 pfd;

	if (fd == -1)
		return 0;
	pfd.fd = fd;
	pfd.events = POLLRDHUP;
	pfd.revents = 0;
	return poll(&pfd, 1, 0) == 1;
}

/* Start a lookup in the background unless one is under way. */
static int
resolve_start(char *err, size_t errlen)
{
	struct gaicb	*list[1] = { &rs.req };
	struct sigevent	 sev;
	int		 rv;

	if (rs.pending)
		return 0;
	memset(&rs.req, 0, sizeof(rs.req));
	rs.req.ar_name = rs.host;
	rs.req.ar_service = rs.port;
	rs.req.ar_request = &rs.hints;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_NONE;
	if ((rv = getaddrinfo_a(GAI_NOWAIT, list, 1, &sev)) != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", rs.host,
		    rv == EAI_SYSTEM ? strerror(errno) : gai_strerror(rv));
		return -1;
	}
	rs.pending = 1;
	return 0;
}

/*
 * Has the lookup under way finished?  Takes its answer if so: 1 with new
 * addresses, -1 (err set) when it failed, 0 while it runs.
 */
static int
resolve_done(int valid_s, char *err, size_t errlen)
{
	int	 rv;

	if (!rs.pending)
		return 0;
	if ((rv = gai_error(&rs.req)) == EAI_INPROGRESS)
		return 0;
	rs.pending = 0;
	if (rv != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", rs.host,
		    rv == EAI_SYSTEM ? strerror(errno) : gai_strerror(rv));
		if (rs.req.ar_result != NULL)
			freeaddrinfo(rs.req.ar_result);
		return -1;
	}
	if (rs.ai != NULL)
		freeaddrinfo(rs.ai);
	rs.ai = rs.req.ar_result;
	rs.req.ar_result = NULL;
	rs.fresh_until = mono_ms() + (int64_t)valid_s * 1000;
	return 1;
}

/*
 * Another upstream: forget the old one (a worker has one upstream for its
 * life; this is the first call) and set up for host:port.  0, or -1 with
 * err.
 */
static int
resolve_forget(const char *host, const char *port, char *err,
    size_t errlen)
{
	int	 rv;

	if (rs.pending) {
		if ((rv = gai_cancel(&rs.req)) == EAI_NOTCANCELED) {
			snprintf(err, errlen, "cannot resolve %s: a lookup of "
			    "%s is under way", host, rs.host);
			return -1;
		}
		if (rv == EAI_ALLDONE && gai_error(&rs.req) == 0 &&
		    rs.req.ar_result != NULL)
			freeaddrinfo(rs.req.ar_result);
	}
	if (rs.ai != NULL)
		freeaddrinfo(rs.ai);
	memset(&rs, 0, sizeof(rs));
	if (strlcpy(rs.host, host, sizeof(rs.host)) >= sizeof(rs.host) ||
	    strlcpy(rs.port, port, sizeof(rs.port)) >= sizeof(rs.port)) {
		rs.host[0] = rs.port[0] = '\0';
		snprintf(err, errlen, "cannot resolve %s: name too long",
		    host);
		return -1;
	}
	rs.hints.ai_family = AF_UNSPEC;
	rs.hints.ai_socktype = SOCK_STREAM;
	rs.hints.ai_flags = AI_NUMERICSERV;
	return 0;
}

/*
 * The addresses of host:port into *out (owned here, valid until the next
 * call), waiting for a lookup only when there are none, and then at most
 * until deadline (mono ms) and only while the client on watch (-1: none)
 * is there.  Returns 0, or RESOLVE_FAIL, RESOLVE_TIMEOUT (err set) or
 * RESOLVE_GONE (resolve.h).
 */
int
resolve_upstream(const char *host, const char *port, int valid_s,
    int64_t deadline, int watch, const struct addrinfo **out, char *err,
    size_t errlen)
{
	struct gaicb	*list[1] = { &rs.req };
	struct timespec	 ts;
	int64_t		 left;
	int		 rv;

	if ((strcmp(rs.host, host) != 0 || strcmp(rs.port, port) != 0) &&
	    resolve_forget(host, port, err, errlen) == -1)
		return RESOLVE_FAIL;
	err[0] = '\0';
	if (rs.ai == NULL && rs.numeric == 0) {
		/* An IP literal needs no lookup, nor a thread to make it. */
		rs.hints.ai_flags |= AI_NUMERICHOST;
		rv = getaddrinfo(host, port, &rs.hints, &rs.ai);
		rs.hints.ai_flags &= ~AI_NUMERICHOST;
		rs.numeric = rv == 0 ? 1 : -1;
		if (rv != 0)
			rs.ai = NULL;
	}
	if (rs.numeric == 1) {
		*out = rs.ai;
		return 0;
	}
	if (resolve_done(valid_s, err, errlen) == -1 && rs.ai != NULL)
		log_warnx("%s; going on with the addresses it had", err);
	if (rs.ai != NULL) {
		if (mono_ms() >= rs.fresh_until &&
		    resolve_start(err, errlen) == -1)
			log_warnx("%s; going on with the addresses it had",
			    err);
		*out = rs.ai;
		return 0;
	}
	/* Nothing to go on with: wait for a lookup, within the deadline. */
	if (resolve_start(err, errlen) == -1)
		return RESOLVE_FAIL;
	for (;;) {
		if ((rv = resolve_done(valid_s, err, errlen)) == 1) {
			*out = rs.ai;
			return 0;
		}
		if (rv == -1)
			return RESOLVE_FAIL;
		if (resolve_gone(watch))
			return RESOLVE_GONE;
		if ((left = deadline - mono_ms()) <= 0) {
			snprintf(err, errlen, "timeout resolving %s", host);
			return RESOLVE_TIMEOUT;
		}
		if (left > RESOLVE_SLICE_MS)
			left = RESOLVE_SLICE_MS;
		ts.tv_sec = 0;
		ts.tv_nsec = left * 1000000;
		(void)gai_suspend((const struct gaicb *const *)list, 1, &ts);
	}
}
