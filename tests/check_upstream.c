/*
 * Unit tests of src/upstream.c and src/tls.c over real TLS: against the
 * stand-in Gemini (tests/standin/gemini_standin.py) for the API's own
 * answers and faults, and against a scripted TLS server forked here for
 * the HTTP corner cases the stand-in never produces.
 *
 * An unchecked fixture, run once in the runner's process, makes the test
 * certificates (tests/mkca.sh) and starts three stand-ins: one with the
 * good certificate, one whose certificate comes from another CA, one whose
 * certificate names another host.  Paths are relative to the repository
 * root, where `make check` runs the unit runner.  Each test (forked by
 * check) builds its own upstream; nothing waits on a sleep.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <arpa/inet.h>

#include <openssl/ssl.h>

#include <bsd/string.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_suites.h"
#include "config.h"
#include "tls.h"
#include "upstream.h"
#include "util.h"

extern char	**environ;

#define TEST_KEY	"AIzaSyUPSTREAMTEST0123456789abcdefghij"
#define MODEL_PATH	"/v1beta/models/gemini-2.5-flash"

enum { STAND_GOOD, STAND_BADCA, STAND_WRONGHOST, STAND_COUNT };

static const char *const stand_cert[STAND_COUNT] = {
	"server", "bad-server", "wronghost"
};

static char		 tdir[512];	/* certificates, configs */
static pid_t		 stand_pid[STAND_COUNT];
static int		 stand_port[STAND_COUNT];
static struct config	 cfg;

/* Run argv and wait for it; returns its exit status or -1. */
static int
run(char *const argv[])
{
	pid_t	 pid;
	int	 st;

	if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) != 0)
		return -1;
	while (waitpid(pid, &st, 0) == -1)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * Start a stand-in serving cert; its port is read from its "READY <port>"
 * line on a pipe.  Returns its pid, or -1.
 */
static pid_t
standin_start(const char *cert, int *port)
{
	posix_spawn_file_actions_t	 fa;
	struct pollfd			 pfd;
	char				 certp[PATH_MAX], keyp[PATH_MAX];
	char				 confp[PATH_MAX], line[64];
	char				*argv[12];
	size_t				 len = 0;
	ssize_t				 n;
	pid_t				 pid;
	int				 p[2], rc;

	snprintf(certp, sizeof(certp), "%s/%s.pem", tdir, cert);
	snprintf(keyp, sizeof(keyp), "%s/%s.key", tdir, cert);
	snprintf(confp, sizeof(confp), "%s/standin.json", tdir);
	argv[0] = "python3";
	argv[1] = "tests/standin/gemini_standin.py";
	argv[2] = "--cert";
	argv[3] = certp;
	argv[4] = "--key";
	argv[5] = keyp;
	argv[6] = "--port";
	argv[7] = "0";
	argv[8] = "--config";
	argv[9] = confp;
	argv[10] = NULL;

	if (pipe2(p, O_CLOEXEC) == -1)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (rc != 0) {
		close(p[0]);
		return -1;
	}
	/* Up to a minute for a loaded machine; the line ends the wait. */
	while (len < sizeof(line) - 1 && memchr(line, '\n', len) == NULL) {
		pfd.fd = p[0];
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 60000) <= 0)
			break;
		if ((n = read(p[0], line + len, sizeof(line) - 1 - len)) <= 0)
			break;
		len += n;
	}
	close(p[0]);
	line[len] = '\0';
	if (sscanf(line, "READY %d", port) != 1) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	return pid;
}

static void
setup_world(void)
{
	char	*mk[] = { "sh", "tests/mkca.sh", tdir, NULL };
	char	 path[PATH_MAX];
	FILE	*f;
	int	 i;

	/* As in a worker: a write to a closed connection is an error. */
	signal(SIGPIPE, SIG_IGN);
	snprintf(tdir, sizeof(tdir), "%s/check_upstream.XXXXXX",
	    getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	ck_assert_int_eq(run(mk), 0);
	snprintf(path, sizeof(path), "%s/standin.json", tdir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fprintf(f, "{\"keys\": {\"%s\": {\"project\": \"p1\"}}}\n", TEST_KEY);
	ck_assert_int_eq(fclose(f), 0);
	for (i = 0; i < STAND_COUNT; i++) {
		stand_pid[i] = standin_start(stand_cert[i], &stand_port[i]);
		ck_assert_msg(stand_pid[i] > 0, "stand-in %s did not start",
		    stand_cert[i]);
	}
}

static void
teardown_world(void)
{
	char	*rm[] = { "rm", "-rf", tdir, NULL };
	int	 i;

	for (i = 0; i < STAND_COUNT; i++) {
		if (stand_pid[i] <= 0)
			continue;
		kill(stand_pid[i], SIGTERM);
		waitpid(stand_pid[i], NULL, 0);
		stand_pid[i] = 0;
	}
	if (tdir[0] != '\0')
		(void)run(rm);
}

/* An upstream to host:port trusting tdir/ca (ca NULL: the system store). */
static struct upstream *
mkup(const char *host, int port, const char *ca)
{
	struct upstream	*u;
	char		 err[256];

	memset(&cfg, 0, sizeof(cfg));
	ck_assert_uint_lt(strlcpy(cfg.upstream_host, host,
	    sizeof(cfg.upstream_host)), sizeof(cfg.upstream_host));
	snprintf(cfg.upstream_port, sizeof(cfg.upstream_port), "%d", port);
	if (ca != NULL)
		snprintf(cfg.upstream_ca_file, sizeof(cfg.upstream_ca_file),
		    "%s/%s", tdir, ca);
	cfg.upstream_timeout_s = 10;
	ck_assert_msg(tls_init(&cfg, err, sizeof(err)) == 0, "tls_init: %s",
	    err);
	ck_assert_ptr_nonnull(u = up_new(&cfg));
	ck_assert_int_eq(up_fd(u), -1);
	return u;
}

static struct upstream *
mkup_standin(int which)
{
	return mkup("localhost", stand_port[which], "ca.pem");
}

/* A POST to MODEL_PATH<action> whose prompt is text. */
static size_t
mkreq(char *head, size_t cap, char *body, size_t bcap, const char *action,
    const char *text, const char *extra)
{
	int	 n, bl;

	bl = snprintf(body, bcap, "{\"contents\": [{\"parts\": "
	    "[{\"text\": \"%s\"}]}]}", text);
	ck_assert(bl > 0 && (size_t)bl < bcap);
	n = snprintf(head, cap, "POST %s%s HTTP/1.1\r\nHost: localhost\r\n"
	    "x-goog-api-key: %s\r\nContent-Type: application/json\r\n"
	    "Content-Length: %d\r\n%s\r\n", MODEL_PATH, action, TEST_KEY, bl,
	    extra != NULL ? extra : "");
	ck_assert(n > 0 && (size_t)n < cap);
	return n;
}

/* Send a request; fails the test unless up_request succeeds. */
static void
send_req(struct upstream *u, const char *action, const char *text,
    const char *extra)
{
	char	 head[1024], body[1024], err[256];
	size_t	 hl;

	hl = mkreq(head, sizeof(head), body, sizeof(body), action, text,
	    extra);
	ck_assert_msg(up_request(u, head, hl, body, strlen(body),
	    mono_ms() + 10000, err, sizeof(err)) == 0, "up_request: %s", err);
}

static void
read_head(struct upstream *u, struct up_resp *r)
{
	char	 err[256];

	ck_assert_msg(up_read_head(u, r, 0, mono_ms() + 10000, err,
	    sizeof(err)) == 0, "up_read_head: %s", err);
}

/* The whole body into buf (NUL-terminated), len bytes at a time. */
static ssize_t
read_body(struct upstream *u, char *buf, size_t cap, size_t len)
{
	size_t	 got = 0, want;
	ssize_t	 n;

	for (;;) {
		want = cap - 1 - got < len ? cap - 1 - got : len;
		ck_assert_uint_gt(want, 0);
		n = up_read_body(u, buf + got, want, mono_ms() + 10000);
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += n;
	}
	buf[got] = '\0';
	return got;
}

/* One generateContent round trip on u; returns the body's length. */
static ssize_t
round_trip(struct upstream *u, struct up_resp *r, char *body, size_t cap,
    const char *extra)
{
	ssize_t	 n;

	send_req(u, ":generateContent", "hello", extra);
	read_head(u, r);
	ck_assert_int_eq(r->status, 200);
	n = read_body(u, body, cap, cap);
	ck_assert_msg(n >= 0, "body: %s", up_error(u));
	ck_assert(up_body_done(u));
	return n;
}

static int
local_port(int fd)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl = sizeof(ss);

	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Wait (bounded) for the upstream's end of the connection to close. */
static void
wait_peer_close(struct upstream *u)
{
	struct pollfd	 pfd;

	if (up_fd(u) == -1)
		return;
	pfd.fd = up_fd(u);
	pfd.events = POLLIN;
	ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
}

/* A port where nothing listens (for a moment). */
static int
closed_port(int family)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl;
	int			 s, port;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET6) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
		sl = sizeof(struct sockaddr_in6);
	} else {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_addr.s_addr =
		    htonl(INADDR_LOOPBACK);
		sl = sizeof(struct sockaddr_in);
	}
	if ((s = socket(family, SOCK_STREAM, 0)) == -1)
		return -1;
	if (bind(s, (struct sockaddr *)&ss, sl) == -1 ||
	    getsockname(s, (struct sockaddr *)&ss, &sl) == -1) {
		close(s);
		return -1;
	}
	port = family == AF_INET6 ?
	    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) :
	    ntohs(((struct sockaddr_in *)&ss)->sin_port);
	close(s);
	return port;
}

/* ---------------------------------------------------------------- */
/* Against the stand-in. */

START_TEST(test_generate)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 body[16384];
	const char	*ct;
	ssize_t		 n;

	n = round_trip(u, &r, body, sizeof(body), NULL);
	ck_assert(!up_reused(u));
	ck_assert(!up_resumed(u));
	ck_assert_int_eq(r.minor, 1);
	ck_assert(!r.chunked && !r.close && !r.no_body);
	ck_assert_int_eq(r.content_length, n);
	ck_assert_ptr_nonnull(ct = up_header(&r, "content-type"));
	ck_assert_ptr_nonnull(strstr(ct, "application/json"));
	ck_assert_ptr_eq(up_header(&r, "CONTENT-TYPE"), ct);
	ck_assert_ptr_null(up_header(&r, "x-not-there"));
	ck_assert_ptr_nonnull(strstr(body, "\"usageMetadata\""));
	ck_assert_ptr_nonnull(strstr(body, "\"totalTokenCount\""));
	ck_assert_ptr_nonnull(strstr(body, "\"candidates\""));
	/* Done: reading on says so, and the connection stays. */
	ck_assert_int_eq(up_read_body(u, body, sizeof(body), mono_ms() + 1000),
	    0);
	ck_assert_int_ne(up_fd(u), -1);
	up_free(u);
	tls_free();
}
END_TEST

/* The same over an IP literal: no SNI, the address is verified. */
START_TEST(test_generate_ip)
{
	struct upstream	*u;
	struct up_resp	 r;
	char		 body[16384];

	u = mkup("127.0.0.1", stand_port[STAND_GOOD], "ca.pem");
	round_trip(u, &r, body, sizeof(body), NULL);
	ck_assert_ptr_nonnull(strstr(body, "\"usageMetadata\""));
	up_free(u);
	tls_free();
}
END_TEST

/* count "\r\n\r\n" in s: SSE events the stand-in has sent. */
static int
count_events(const char *s)
{
	int	 n = 0;

	while ((s = strstr(s, "\r\n\r\n")) != NULL) {
		n++;
		s += 4;
	}
	return n;
}

START_TEST(test_sse_pieces)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 all[16384], piece[4096];
	int64_t		 t_head, t_ev[4];
	size_t		 len = 0;
	ssize_t		 n;
	int		 ev = 0, now_ev;

	send_req(u, ":streamGenerateContent?alt=sse",
	    "STANDIN:chunks=3 STANDIN:delay_ms=400", NULL);
	read_head(u, &r);
	t_head = mono_ms();
	ck_assert_int_eq(r.status, 200);
	ck_assert(r.chunked && !r.close);
	ck_assert_int_eq(r.content_length, -1);
	ck_assert_ptr_nonnull(strstr(up_header(&r, "Content-Type"),
	    "text/event-stream"));
	for (;;) {
		n = up_read_body(u, piece, sizeof(piece), mono_ms() + 10000);
		ck_assert_msg(n >= 0, "body: %s", up_error(u));
		if (n == 0)
			break;
		ck_assert_uint_lt(len + n, sizeof(all));
		memcpy(all + len, piece, n);
		len += n;
		all[len] = '\0';
		now_ev = count_events(all);
		/* One event per piece: nothing waits to fill the buffer. */
		ck_assert_int_le(now_ev, ev + 1);
		if (now_ev > ev) {
			ck_assert_int_lt(ev, 3);
			t_ev[ev++] = mono_ms();
		}
	}
	ck_assert_int_eq(ev, 3);
	ck_assert(up_body_done(u));
	/* The first event came at once, well before the second was sent. */
	ck_assert_int_lt(t_ev[0] - t_head, 300);
	ck_assert_int_ge(t_ev[1] - t_ev[0], 300);
	ck_assert_int_ge(t_ev[2] - t_ev[1], 300);
	ck_assert_ptr_nonnull(strstr(all, "data: {"));
	ck_assert_ptr_nonnull(strstr(all, "\"usageMetadata\""));
	ck_assert_ptr_null(strstr(all, "\r\n0\r\n"));	/* de-chunked */
	ck_assert_int_ne(up_fd(u), -1);
	up_free(u);
	tls_free();
}
END_TEST

START_TEST(test_keepalive)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 body[16384];
	int		 i, fd, port;

	round_trip(u, &r, body, sizeof(body), NULL);
	ck_assert(!up_reused(u));
	fd = up_fd(u);
	port = local_port(fd);
	for (i = 0; i < 2; i++) {
		round_trip(u, &r, body, sizeof(body), NULL);
		ck_assert(up_reused(u));
		ck_assert_int_eq(up_fd(u), fd);
		ck_assert_int_eq(local_port(up_fd(u)), port);
		ck_assert_ptr_nonnull(strstr(body, "\"usageMetadata\""));
	}
	/* A stream on the same connection, then a plain answer again. */
	send_req(u, ":streamGenerateContent?alt=sse", "STANDIN:chunks=2",
	    NULL);
	read_head(u, &r);
	ck_assert(up_reused(u));
	ck_assert_int_ge(read_body(u, body, sizeof(body), 7), 0);
	ck_assert_int_eq(count_events(body), 2);
	round_trip(u, &r, body, sizeof(body), NULL);
	ck_assert(up_reused(u));
	ck_assert_int_eq(local_port(up_fd(u)), port);
	up_free(u);
	tls_free();
}
END_TEST

/*
 * The stand-in closes after an answer to "Connection: close" (without
 * saying so in the answer): the next request sees the closed connection
 * before writing and makes a new one, resuming the TLS session.
 */
START_TEST(test_reconnect)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 body[16384];
	int		 port;

	round_trip(u, &r, body, sizeof(body), "Connection: close\r\n");
	port = up_fd(u) != -1 ? local_port(up_fd(u)) : -1;
	wait_peer_close(u);
	round_trip(u, &r, body, sizeof(body), NULL);
	ck_assert(!up_reused(u));
	ck_assert(up_resumed(u));
	ck_assert_int_ne(local_port(up_fd(u)), port);
	ck_assert_ptr_nonnull(strstr(body, "\"usageMetadata\""));
	/* And the new connection is kept in turn. */
	round_trip(u, &r, body, sizeof(body), NULL);
	ck_assert(up_reused(u));
	up_free(u);
	tls_free();
}
END_TEST

/*
 * Without waiting for the close to arrive: either it is seen in time, or
 * the request fails on the reused connection and, as proxy.c does, one
 * retry on a fresh connection succeeds.
 */
START_TEST(test_keepalive_race)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 head[1024], body[1024], err[256], out[16384];
	size_t		 hl;
	int		 i, rv;

	for (i = 0; i < 5; i++) {
		hl = mkreq(head, sizeof(head), body, sizeof(body),
		    ":generateContent", "hello", "Connection: close\r\n");
		rv = up_request(u, head, hl, body, strlen(body),
		    mono_ms() + 10000, err, sizeof(err));
		if (rv == 0)
			rv = up_read_head(u, &r, 0, mono_ms() + 10000, err,
			    sizeof(err));
		if (rv == -1) {
			ck_assert_msg(up_reused(u), "fresh connection "
			    "failed: %s", err);
			ck_assert_msg(up_stale(u), "not stale: %s", err);
			up_close(u);
			rv = up_request(u, head, hl, body, strlen(body),
			    mono_ms() + 10000, err, sizeof(err));
			ck_assert_msg(rv == 0, "retry: %s", err);
			ck_assert(!up_reused(u));
			read_head(u, &r);
		}
		ck_assert_int_eq(r.status, 200);
		ck_assert_int_gt(read_body(u, out, sizeof(out), sizeof(out)),
		    0);
	}
	up_free(u);
	tls_free();
}
END_TEST

START_TEST(test_resume)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 body[16384];
	int		 i;

	round_trip(u, &r, body, sizeof(body), NULL);
	ck_assert(!up_resumed(u));
	for (i = 0; i < 3; i++) {
		up_close(u);
		ck_assert_int_eq(up_fd(u), -1);
		up_close(u);		/* twice is harmless */
		round_trip(u, &r, body, sizeof(body), NULL);
		ck_assert(!up_reused(u));
		ck_assert_msg(up_resumed(u), "handshake %d not resumed", i + 2);
	}
	up_free(u);
	tls_free();
}
END_TEST

static void
expect_request_error(struct upstream *u, const char *want1,
    const char *want2)
{
	char	 head[1024], body[1024], err[256];
	size_t	 hl;

	hl = mkreq(head, sizeof(head), body, sizeof(body), ":generateContent",
	    "hello", NULL);
	err[0] = '\0';
	ck_assert_int_eq(up_request(u, head, hl, body, strlen(body),
	    mono_ms() + 10000, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, want1) != NULL, "error \"%s\" lacks \"%s\"",
	    err, want1);
	if (want2 != NULL)
		ck_assert_msg(strstr(err, want2) != NULL,
		    "error \"%s\" lacks \"%s\"", err, want2);
	ck_assert_str_eq(up_error(u), err);
	ck_assert_ptr_null(strstr(err, TEST_KEY));
	ck_assert_int_eq(up_fd(u), -1);
}

START_TEST(test_bad_ca)
{
	struct upstream	*u = mkup_standin(STAND_BADCA);
	char		 want[128];

	snprintf(want, sizeof(want), "TLS handshake with localhost:%d: ",
	    stand_port[STAND_BADCA]);
	expect_request_error(u, want, "certificate verify failed (");
	up_free(u);
	tls_free();
}
END_TEST

START_TEST(test_system_store)
{
	struct upstream	*u;

	/* The test CA is not in the system's store: refused too. */
	u = mkup("localhost", stand_port[STAND_GOOD], NULL);
	expect_request_error(u, "certificate verify failed", NULL);
	up_free(u);
	tls_free();
}
END_TEST

START_TEST(test_wronghost)
{
	struct upstream	*u = mkup_standin(STAND_WRONGHOST);

	expect_request_error(u, "certificate verify failed",
	    "hostname mismatch");
	up_free(u);
	u = mkup("127.0.0.1", stand_port[STAND_WRONGHOST], "ca.pem");
	expect_request_error(u, "certificate verify failed",
	    "IP address mismatch");
	up_free(u);
	tls_free();
}
END_TEST

START_TEST(test_refused)
{
	struct upstream	*u;
	char		 want[128];
	int		 port;

	ck_assert_int_gt(port = closed_port(AF_INET), 0);
	u = mkup("127.0.0.1", port, "ca.pem");
	snprintf(want, sizeof(want), "connect 127.0.0.1:%d: Connection "
	    "refused", port);
	expect_request_error(u, want, NULL);
	ck_assert_str_eq(up_error(u), want);
	up_free(u);

	/* A name: every address is tried, the last failure is told. */
	u = mkup("localhost", port, "ca.pem");
	snprintf(want, sizeof(want), "connect localhost:%d (", port);
	expect_request_error(u, want, "): Connection refused");
	up_free(u);

	u = mkup("name.invalid", port, "ca.pem");
	expect_request_error(u, "cannot resolve name.invalid", NULL);
	up_free(u);
	tls_free();
}
END_TEST

/* A server that never speaks TLS: the handshake gives up at the deadline. */
START_TEST(test_handshake_timeout)
{
	struct sockaddr_in	 sin;
	struct upstream		*u;
	socklen_t		 sl = sizeof(sin);
	char			 head[1024], body[1024], err[256];
	char			 want[128];
	size_t			 hl;
	int64_t			 t0, dt;
	int			 ls;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_ne(ls = socket(AF_INET, SOCK_STREAM, 0), -1);
	ck_assert_int_eq(bind(ls, (struct sockaddr *)&sin, sl), 0);
	ck_assert_int_eq(listen(ls, 4), 0);	/* the kernel accepts */
	ck_assert_int_eq(getsockname(ls, (struct sockaddr *)&sin, &sl), 0);
	u = mkup("127.0.0.1", ntohs(sin.sin_port), "ca.pem");
	hl = mkreq(head, sizeof(head), body, sizeof(body), ":generateContent",
	    "hello", NULL);
	t0 = mono_ms();
	ck_assert_int_eq(up_request(u, head, hl, body, strlen(body), t0 + 700,
	    err, sizeof(err)), -1);
	dt = mono_ms() - t0;
	snprintf(want, sizeof(want), "timeout in the TLS handshake with "
	    "127.0.0.1:%d", ntohs(sin.sin_port));
	ck_assert_str_eq(err, want);
	ck_assert_int_ge(dt, 690);
	ck_assert_int_lt(dt, 2000);
	ck_assert_int_eq(up_fd(u), -1);
	close(ls);
	up_free(u);
	tls_free();
}
END_TEST

START_TEST(test_tls_init)
{
	char	 err[256];

	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.upstream_ca_file, sizeof(cfg.upstream_ca_file),
	    "%s/no-such-ca.pem", tdir);
	err[0] = '\0';
	ck_assert_int_eq(tls_init(&cfg, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "no-such-ca.pem"));
	/* A file that is not PEM. */
	snprintf(cfg.upstream_ca_file, sizeof(cfg.upstream_ca_file),
	    "%s/standin.json", tdir);
	ck_assert_int_eq(tls_init(&cfg, err, sizeof(err)), -1);
	cfg.upstream_ca_file[0] = '\0';
	ck_assert_int_eq(tls_init(&cfg, err, sizeof(err)), 0);
	/* Twice replaces the context. */
	ck_assert_int_eq(tls_init(&cfg, err, sizeof(err)), 0);
	tls_free();
	tls_free();
}
END_TEST

/* The answer never starts: up_read_head gives up at its deadline. */
START_TEST(test_stall)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 err[256], body[16384];
	int64_t		 t0, dt;

	send_req(u, ":generateContent", "STANDIN:fault=stall", NULL);
	t0 = mono_ms();
	ck_assert_int_eq(up_read_head(u, &r, 0, t0 + 1000, err, sizeof(err)),
	    -1);
	dt = mono_ms() - t0;
	ck_assert_str_eq(err, "timeout waiting for the upstream's answer");
	ck_assert_int_ge(dt, 990);
	ck_assert_int_lt(dt, 2500);
	ck_assert_int_eq(up_fd(u), -1);
	/* The next request works on a new connection. */
	round_trip(u, &r, body, sizeof(body), NULL);
	ck_assert(!up_reused(u));
	up_free(u);
	tls_free();
}
END_TEST

START_TEST(test_close_before_headers)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 err[256];

	send_req(u, ":generateContent", "STANDIN:fault=close_before_headers",
	    NULL);
	ck_assert_int_eq(up_read_head(u, &r, 0, mono_ms() + 10000, err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err,
	    "upstream closed the connection before answering");
	ck_assert_int_eq(up_fd(u), -1);
	ck_assert(!up_reused(u));
	up_free(u);
	tls_free();
}
END_TEST

START_TEST(test_garbage)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 err[256];

	send_req(u, ":generateContent", "STANDIN:fault=garbage", NULL);
	ck_assert_int_eq(up_read_head(u, &r, 0, mono_ms() + 10000, err,
	    sizeof(err)), -1);
	ck_assert_msg(strncmp(err, "malformed answer from upstream",
	    30) == 0, "%s", err);
	up_free(u);
	tls_free();
}
END_TEST

/*
 * Only a kept-alive connection closed before a byte of the answer is
 * worth a second try on a new one (up_stale): a stall or garbage on a
 * reused connection is the upstream's answer, not a stale connection.
 */
START_TEST(test_stale)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 err[256], body[16384];

	round_trip(u, &r, body, sizeof(body), NULL);
	send_req(u, ":generateContent", "STANDIN:fault=garbage", NULL);
	ck_assert(up_reused(u));
	ck_assert_int_eq(up_read_head(u, &r, 0, mono_ms() + 10000, err,
	    sizeof(err)), -1);
	ck_assert(!up_stale(u));
	round_trip(u, &r, body, sizeof(body), NULL);
	send_req(u, ":generateContent", "STANDIN:fault=stall", NULL);
	ck_assert(up_reused(u));
	ck_assert_int_eq(up_read_head(u, &r, 0, mono_ms() + 300, err,
	    sizeof(err)), -1);
	ck_assert(!up_stale(u));
	round_trip(u, &r, body, sizeof(body), NULL);
	send_req(u, ":generateContent", "STANDIN:fault=close_before_headers",
	    NULL);
	ck_assert(up_reused(u));
	ck_assert_int_eq(up_read_head(u, &r, 0, mono_ms() + 10000, err,
	    sizeof(err)), -1);
	ck_assert(up_stale(u));
	/* A fresh connection is never stale. */
	send_req(u, ":generateContent", "STANDIN:fault=close_before_headers",
	    NULL);
	ck_assert_int_eq(up_read_head(u, &r, 0, mono_ms() + 10000, err,
	    sizeof(err)), -1);
	ck_assert(!up_stale(u));
	up_free(u);
	tls_free();
}
END_TEST

START_TEST(test_reset_midstream)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 buf[16384];
	ssize_t		 n;

	send_req(u, ":streamGenerateContent?alt=sse",
	    "STANDIN:fault=reset_midstream STANDIN:chunks=3", NULL);
	read_head(u, &r);
	ck_assert_int_eq(r.status, 200);
	n = up_read_body(u, buf, sizeof(buf), mono_ms() + 10000);
	ck_assert_msg(n > 0, "first piece: %zd (%s)", n, up_error(u));
	buf[n] = '\0';
	ck_assert_ptr_nonnull(strstr(buf, "data: {"));
	ck_assert_int_eq(up_read_body(u, buf, sizeof(buf), mono_ms() + 10000),
	    -1);
	ck_assert(!up_body_done(u));
	ck_assert_str_ne(up_error(u), "");
	ck_assert_int_eq(up_fd(u), -1);
	up_free(u);
	tls_free();
}
END_TEST

START_TEST(test_stall_midstream)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 buf[16384];
	int64_t		 t0;
	ssize_t		 n;

	send_req(u, ":streamGenerateContent?alt=sse",
	    "STANDIN:fault=stall_midstream", NULL);
	read_head(u, &r);
	ck_assert_int_gt(up_read_body(u, buf, sizeof(buf), mono_ms() + 10000),
	    0);
	t0 = mono_ms();
	n = up_read_body(u, buf, sizeof(buf), t0 + 800);
	ck_assert_int_eq(n, -1);
	ck_assert_int_ge(mono_ms() - t0, 790);
	ck_assert_ptr_nonnull(strstr(up_error(u), "timeout"));
	ck_assert_int_eq(up_fd(u), -1);
	up_free(u);
	tls_free();
}
END_TEST

/* An error answer of the API comes through like any other. */
START_TEST(test_error_status)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 body[16384];

	send_req(u, ":generateContent", "STANDIN:status=503", NULL);
	read_head(u, &r);
	ck_assert_int_eq(r.status, 503);
	ck_assert_int_gt(read_body(u, body, sizeof(body), sizeof(body)), 0);
	ck_assert_ptr_nonnull(strstr(body, "UNAVAILABLE"));
	round_trip(u, &r, body, sizeof(body), NULL);
	ck_assert(up_reused(u));
	up_free(u);
	tls_free();
}
END_TEST

/* A large request body: sent whole, past the one-record copy. */
START_TEST(test_large_request)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 head[1024], err[256], out[16384], *body;
	size_t		 blen = 300 * 1024, i;
	int		 hl;

	ck_assert_ptr_nonnull(body = malloc(blen + 64));
	i = snprintf(body, 64, "{\"contents\": [{\"parts\": [{\"text\": \"");
	for (; i < blen; i++)
		body[i] = 'a' + i % 26;
	i += snprintf(body + i, 64, "\"}]}]}");
	hl = snprintf(head, sizeof(head), "POST %s:countTokens HTTP/1.1\r\n"
	    "Host: localhost\r\nx-goog-api-key: %s\r\nContent-Length: %zu\r\n"
	    "\r\n", MODEL_PATH, TEST_KEY, i);
	ck_assert_msg(up_request(u, head, hl, body, i, mono_ms() + 10000, err,
	    sizeof(err)) == 0, "%s", err);
	read_head(u, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_gt(read_body(u, out, sizeof(out), sizeof(out)), 0);
	ck_assert_ptr_nonnull(strstr(out, "totalTokens"));
	free(body);
	up_free(u);
	tls_free();
}
END_TEST

/* ---------------------------------------------------------------- */
/* Against a scripted TLS server: answers the stand-in never gives. */

struct raw_server {
	const char	*answer;	/* sent for each request */
	size_t		 len;		/* 0: strlen(answer) */
	int		 close_after;	/* close after answering */
	int		 tls12;		/* at most TLS 1.2 */
	int		 nconn;		/* connections (0: one) */
	int		 family;	/* 0: AF_INET */
};

/* Read one request head (no body).  Returns 1, or 0 at EOF/error. */
static int
raw_read_request(SSL *ssl)
{
	char	 buf[8192];
	size_t	 len = 0;
	int	 n;

	for (;;) {
		if (len == sizeof(buf) - 1)
			return 0;
		if ((n = SSL_read(ssl, buf + len, sizeof(buf) - 1 - len)) <= 0)
			return 0;
		len += n;
		buf[len] = '\0';
		if (strstr(buf, "\r\n\r\n") != NULL)
			return 1;
	}
}

/* The server's child: answer every request with the same bytes. */
static void
raw_serve(int ls, const struct raw_server *rs)
{
	SSL_CTX		*ctx;
	SSL		*ssl;
	char		 path[PATH_MAX];
	size_t		 len = rs->len ? rs->len : strlen(rs->answer);
	int		 c, i;

	alarm(20);	/* whatever happens to the test */
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		_exit(1);
	snprintf(path, sizeof(path), "%s/server.pem", tdir);
	if (SSL_CTX_use_certificate_chain_file(ctx, path) != 1)
		_exit(1);
	snprintf(path, sizeof(path), "%s/server.key", tdir);
	if (SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) != 1)
		_exit(1);
	if (rs->tls12)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	for (i = 0; i < (rs->nconn ? rs->nconn : 1); i++) {
		if ((c = accept(ls, NULL, NULL)) == -1)
			_exit(1);
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, c);
		if (SSL_accept(ssl) == 1) {
			while (raw_read_request(ssl)) {
				if (SSL_write(ssl, rs->answer, len) <= 0)
					break;
				if (rs->close_after) {
					SSL_shutdown(ssl);
					break;
				}
			}
		}
		SSL_free(ssl);
		close(c);
	}
	_exit(0);
}

/* Start a scripted server on the loopback; returns its pid, or -1. */
static pid_t
raw_start(const struct raw_server *rs, int *port)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl;
	pid_t			 pid;
	int			 ls, family;

	family = rs->family != 0 ? rs->family : AF_INET;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET6) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
		sl = sizeof(struct sockaddr_in6);
	} else {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_addr.s_addr =
		    htonl(INADDR_LOOPBACK);
		sl = sizeof(struct sockaddr_in);
	}
	if ((ls = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (bind(ls, (struct sockaddr *)&ss, sl) == -1 || listen(ls, 8) == -1 ||
	    getsockname(ls, (struct sockaddr *)&ss, &sl) == -1) {
		close(ls);
		return -1;
	}
	*port = family == AF_INET6 ?
	    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) :
	    ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if ((pid = fork()) == -1) {
		close(ls);
		return -1;
	}
	if (pid == 0)
		raw_serve(ls, rs);
	close(ls);
	return pid;
}

static void
raw_stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static const char raw_get[] = "GET /v1beta/models HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n\r\n";

/* Send raw_get on u and read the head; returns up_read_head's result. */
static int
raw_exchange(struct upstream *u, struct up_resp *r, int head_request,
    char *err, size_t errlen)
{
	ck_assert_msg(up_request(u, raw_get, sizeof(raw_get) - 1, NULL, 0,
	    mono_ms() + 10000, err, errlen) == 0, "up_request: %s", err);
	return up_read_head(u, r, head_request, mono_ms() + 10000, err,
	    errlen);
}

/*
 * A 101 asked for (UP_HEAD_UPGRADE) ends the head, and the connection is
 * uplink.c's: the bytes that came with the head are read first, then
 * what follows; a 101 not asked for stays an error (raw_cases).
 */
START_TEST(test_upgrade)
{
	static const char	 sw[] = "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: x\r\n\r\nAB";
	struct raw_server	 rs;
	struct upstream		*u;
	struct up_resp		 r;
	char			 err[256], b[8];
	pid_t			 pid;
	int			 port;

	memset(&rs, 0, sizeof(rs));
	rs.answer = sw;
	ck_assert_int_gt(pid = raw_start(&rs, &port), 0);
	u = mkup("127.0.0.1", port, "ca.pem");
	ck_assert_msg(raw_exchange(u, &r, UP_HEAD_UPGRADE, err,
	    sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(r.status, 101);
	ck_assert_str_eq(up_header(&r, "upgrade"), "websocket");
	ck_assert(up_link_pending(u));
	ck_assert_int_eq(up_link_recv(u, b, 1), 1);
	ck_assert_int_eq(b[0], 'A');
	ck_assert_int_eq(up_link_recv(u, b, sizeof(b)), 1);
	ck_assert_int_eq(b[0], 'B');
	ck_assert(!up_link_pending(u));
	ck_assert_int_eq(up_link_send(u, "ping", 4), 4);
	ck_assert_int_ne(up_fd(u), -1);
	up_free(u);
	raw_stop(pid);

	/* Not upgraded: the calls refuse. */
	memset(&rs, 0, sizeof(rs));
	rs.answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	ck_assert_int_gt(pid = raw_start(&rs, &port), 0);
	u = mkup("127.0.0.1", port, "ca.pem");
	ck_assert_int_eq(raw_exchange(u, &r, UP_HEAD_UPGRADE, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(up_link_recv(u, b, sizeof(b)), -1);
	ck_assert_int_eq(up_failure(u), UP_ERR_USAGE);
	up_free(u);
	raw_stop(pid);
}
END_TEST

struct raw_case {
	const char	*name;
	const char	*answer;
	int		 close_after;
	int		 head_request;
	const char	*head_err;	/* NULL: the head is good */
	int		 status;
	int64_t		 cl;
	int		 chunked, close, no_body;
	const char	*body;		/* NULL: the body fails */
	int		 kept;		/* connection survives */
};

static const struct raw_case raw_cases[] = {
	{ .name = "100 Continue skipped",
	  .answer = "HTTP/1.1 100 Continue\r\n\r\n"
	  "HTTP/1.1 102 Processing\r\nX: y\r\n\r\n"
	  "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
	  .status = 200, .cl = 5, .body = "hello", .kept = 1 },
	{ .name = "204 has no body",
	  .answer = "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
	  .status = 204, .cl = -1, .no_body = 1, .body = "", .kept = 1 },
	{ .name = "304 has no body whatever its length",
	  .answer = "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
	  .status = 304, .cl = 10, .no_body = 1, .body = "", .kept = 1 },
	{ .name = "HEAD: no body whatever the length",
	  .answer = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
	  .head_request = 1,
	  .status = 200, .cl = 100, .no_body = 1, .body = "", .kept = 1 },
	{ .name = "HTTP/1.0 closes",
	  .answer = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
	  .status = 200, .cl = 2, .close = 1, .body = "hi" },
	{ .name = "HTTP/1.0 with keep-alive",
	  .answer = "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n"
	  "Content-Length: 1\r\n\r\nx",
	  .status = 200, .cl = 1, .body = "x", .kept = 1 },
	{ .name = "Connection: close",
	  .answer = "HTTP/1.1 200 OK\r\nConnection: foo, close\r\n"
	  "Content-Length: 3\r\n\r\nabc",
	  .status = 200, .cl = 3, .close = 1, .body = "abc" },
	{ .name = "body until close",
	  .answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
	  "until the end",
	  .close_after = 1,
	  .status = 200, .cl = -1, .close = 1, .body = "until the end" },
	{ .name = "chunked with extensions and trailers",
	  .answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
	  "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
	  .status = 200, .cl = -1, .chunked = 1, .body = "hello world",
	  .kept = 1 },
	{ .name = "no reason phrase",
	  .answer = "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
	  .status = 200, .cl = 0, .body = "", .kept = 1 },
	{ .name = "repeated identical Content-Length",
	  .answer = "HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n"
	  "Content-Length: 4\r\n\r\nabcd",
	  .status = 200, .cl = 4, .body = "abcd", .kept = 1 },
	{ .name = "bytes past the answer: not reused",
	  .answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiEXTRA",
	  .status = 200, .cl = 2, .body = "hi" },
	{ .name = "truncated body",
	  .answer = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
	  .close_after = 1, .status = 200, .cl = 10 },
	{ .name = "truncated chunked body",
	  .answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	  "5\r\nhel",
	  .close_after = 1, .status = 200, .cl = -1, .chunked = 1 },
	{ .name = "bad chunk size",
	  .answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	  "zz\r\n",
	  .status = 200, .cl = -1, .chunked = 1 },
	{ .name = "CL and TE",
	  .answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
	  "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	  .head_err = "both Transfer-Encoding and Content-Length" },
	{ .name = "gzip, chunked",
	  .answer = "HTTP/1.1 200 OK\r\n"
	  "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	  .head_err = "unsupported Transfer-Encoding" },
	{ .name = "TE in HTTP/1.0",
	  .answer = "HTTP/1.0 200 OK\r\n"
	  "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	  .head_err = "Transfer-Encoding in an HTTP/1.0 answer" },
	{ .name = "conflicting Content-Length",
	  .answer = "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
	  .head_err = "Content-Length" },
	{ .name = "negative Content-Length",
	  .answer = "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
	  .head_err = "Content-Length" },
	{ .name = "bare LF",
	  .answer = "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
	  .head_err = "bare LF" },
	{ .name = "bare CR",
	  .answer = "HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n",
	  .head_err = "bare CR" },
	{ .name = "obs-fold",
	  .answer = "HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\n"
	  "Content-Length: 0\r\n\r\n",
	  .head_err = "line folding" },
	{ .name = "space before colon",
	  .answer = "HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",
	  .head_err = "header field name" },
	{ .name = "control character",
	  .answer = "HTTP/1.1 200 OK\r\nX-A: a\001b\r\n\r\n",
	  .head_err = "control character" },
	{ .name = "HTTP/2 status line",
	  .answer = "HTTP/2 200\r\n\r\n",
	  .head_err = "status line" },
	{ .name = "two-digit status",
	  .answer = "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
	  .head_err = "status" },
	{ .name = "101",
	  .answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
	  .head_err = "101" },
	{ .name = "not HTTP",
	  .answer = "SSH-2.0-OpenSSH_9.2\r\n\r\n",
	  .head_err = "status line" },
	{ .name = "head cut by close",
	  .answer = "HTTP/1.1 200 OK\r\nContent-Le",
	  .close_after = 1, .head_err = "connection closed in the head" },
};

START_TEST(test_raw)
{
	const struct raw_case	*c = &raw_cases[_i];
	struct raw_server	 rs;
	struct upstream		*u;
	struct up_resp		 r;
	char			 err[256], body[256];
	ssize_t			 n;
	pid_t			 pid;
	int			 port, rv;

	memset(&rs, 0, sizeof(rs));
	rs.answer = c->answer;
	rs.close_after = c->close_after;
	ck_assert_int_gt(pid = raw_start(&rs, &port), 0);
	u = mkup("127.0.0.1", port, "ca.pem");
	err[0] = '\0';
	rv = raw_exchange(u, &r, c->head_request, err, sizeof(err));
	if (c->head_err != NULL) {
		ck_assert_msg(rv == -1, "%s: head accepted", c->name);
		ck_assert_msg(strncmp(err, "malformed answer from upstream: ",
		    32) == 0 && strstr(err, c->head_err) != NULL,
		    "%s: error \"%s\", want \"%s\"", c->name, err,
		    c->head_err);
		ck_assert_int_eq(up_fd(u), -1);
		goto done;
	}
	ck_assert_msg(rv == 0, "%s: %s", c->name, err);
	ck_assert_int_eq(r.status, c->status);
	ck_assert_int_eq(r.content_length, c->cl);
	ck_assert_int_eq(r.chunked, c->chunked);
	ck_assert_msg(r.close == c->close, "%s: close %d", c->name, r.close);
	ck_assert_int_eq(r.no_body, c->no_body);
	/* Three bytes at a time: pieces never run past what is asked. */
	n = read_body(u, body, sizeof(body), 3);
	if (c->body == NULL) {
		ck_assert_msg(n == -1, "%s: body read", c->name);
		ck_assert_str_ne(up_error(u), "");
		ck_assert(!up_body_done(u));
		ck_assert_int_eq(up_fd(u), -1);
		goto done;
	}
	ck_assert_msg(n >= 0, "%s: %s", c->name, up_error(u));
	ck_assert_str_eq(body, c->body);
	ck_assert(up_body_done(u));
	ck_assert_msg((up_fd(u) != -1) == c->kept, "%s: fd %d", c->name,
	    up_fd(u));
	if (c->kept) {
		/* The server answers again on the same connection. */
		ck_assert_int_eq(raw_exchange(u, &r, c->head_request, err,
		    sizeof(err)), 0);
		ck_assert(up_reused(u));
		ck_assert_int_eq(r.status, c->status);
		ck_assert_int_ge(read_body(u, body, sizeof(body), 64), 0);
		ck_assert_str_eq(body, c->body);
	}
done:
	up_free(u);
	tls_free();
	raw_stop(pid);
}
END_TEST

/* A generated answer head: prefix, then n copies of line, then CRLF. */
static char *
big_answer(const char *line, size_t n, size_t *len)
{
	size_t	 ll = strlen(line), i;
	char	*a, *p;

	ck_assert_ptr_nonnull(a = malloc(64 + n * ll));
	p = a + snprintf(a, 64, "HTTP/1.1 200 OK\r\n");
	for (i = 0; i < n; i++, p += ll)
		memcpy(p, line, ll);
	p += snprintf(p, 64, "Content-Length: 0\r\n\r\n");
	*len = p - a;
	return a;
}

static void
raw_head_error(const char *answer, size_t len, const char *want)
{
	struct raw_server	 rs;
	struct upstream		*u;
	struct up_resp		 r;
	char			 err[256];
	pid_t			 pid;
	int			 port;

	memset(&rs, 0, sizeof(rs));
	rs.answer = answer;
	rs.len = len;
	ck_assert_int_gt(pid = raw_start(&rs, &port), 0);
	u = mkup("127.0.0.1", port, "ca.pem");
	ck_assert_int_eq(raw_exchange(u, &r, 0, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, want) != NULL, "error \"%s\"", err);
	up_free(u);
	tls_free();
	raw_stop(pid);
}

START_TEST(test_raw_limits)
{
	struct raw_server	 rs;
	struct upstream		*u;
	struct up_resp		 r;
	char			*a, err[256], body[64];
	size_t			 len;
	pid_t			 pid;
	int			 port;

	/* Exactly UP_MAX_HEADERS fields pass, one more does not. */
	a = big_answer("X-N: n\r\n", UP_MAX_HEADERS - 1, &len);
	memset(&rs, 0, sizeof(rs));
	rs.answer = a;
	rs.len = len;
	ck_assert_int_gt(pid = raw_start(&rs, &port), 0);
	u = mkup("127.0.0.1", port, "ca.pem");
	ck_assert_msg(raw_exchange(u, &r, 0, err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_uint_eq(r.nhdr, UP_MAX_HEADERS);
	ck_assert_str_eq(up_header(&r, "x-n"), "n");
	ck_assert_int_eq(read_body(u, body, sizeof(body), 8), 0);
	up_free(u);
	tls_free();
	raw_stop(pid);
	free(a);

	a = big_answer("X-N: n\r\n", UP_MAX_HEADERS, &len);
	raw_head_error(a, len, "too many header fields");
	free(a);

	a = big_answer("X-Big: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", UP_MAX_HEAD / 64, &len);
	ck_assert_uint_gt(len, UP_MAX_HEAD);
	raw_head_error(a, len, "head too large");
	free(a);
}
END_TEST

/* TLS 1.2 resumes too (session IDs/tickets at the handshake's end). */
START_TEST(test_raw_tls12_resume)
{
	struct raw_server	 rs;
	struct upstream		*u;
	struct up_resp		 r;
	char			 err[256], body[64];
	pid_t			 pid;
	int			 port, i;

	memset(&rs, 0, sizeof(rs));
	rs.answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	rs.tls12 = 1;
	rs.nconn = 3;
	ck_assert_int_gt(pid = raw_start(&rs, &port), 0);
	u = mkup("localhost", port, "ca.pem");
	for (i = 0; i < 3; i++) {
		ck_assert_msg(raw_exchange(u, &r, 0, err, sizeof(err)) == 0,
		    "%s", err);
		ck_assert_int_eq(read_body(u, body, sizeof(body), 64), 2);
		ck_assert_msg(up_resumed(u) == (i > 0), "handshake %d", i);
		up_close(u);
	}
	up_free(u);
	tls_free();
	raw_stop(pid);
}
END_TEST

/* IPv6: a bracketed name in errors, the address verified. */
START_TEST(test_raw_ipv6)
{
	struct raw_server	 rs;
	struct upstream		*u;
	struct up_resp		 r;
	char			 err[256], body[64], want[128];
	pid_t			 pid;
	int			 port;

	memset(&rs, 0, sizeof(rs));
	rs.answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6";
	rs.family = AF_INET6;
	if ((pid = raw_start(&rs, &port)) == -1)
		return;		/* no IPv6 loopback here */
	u = mkup("::1", port, "ca.pem");
	ck_assert_msg(raw_exchange(u, &r, 0, err, sizeof(err)) == 0, "%s",
	    err);
	ck_assert_int_eq(read_body(u, body, sizeof(body), 64), 2);
	ck_assert_str_eq(body, "v6");
	up_free(u);
	raw_stop(pid);

	ck_assert_int_gt(port = closed_port(AF_INET6), 0);
	u = mkup("::1", port, "ca.pem");
	snprintf(want, sizeof(want), "connect [::1]:%d: Connection refused",
	    port);
	expect_request_error(u, want, NULL);
	up_free(u);
	tls_free();
}
END_TEST

/* Misuse is refused without harm. */
START_TEST(test_misuse)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 err[256], buf[16];

	ck_assert_int_eq(up_read_head(u, &r, 0, mono_ms() + 100, err,
	    sizeof(err)), -1);
	ck_assert_int_eq(up_read_body(u, buf, sizeof(buf), mono_ms() + 100),
	    -1);
	ck_assert(!up_body_done(u));
	ck_assert(!up_pending(u));
	up_close(u);
	up_free(u);
	up_free(NULL);
	tls_free();
}
END_TEST

/* A whole answer held back in buffers shows as pending. */
START_TEST(test_pending)
{
	struct upstream	*u = mkup_standin(STAND_GOOD);
	struct up_resp	 r;
	char		 buf[16];
	int64_t		 deadline = mono_ms() + 10000;
	ssize_t		 n;

	send_req(u, ":generateContent", "hello", NULL);
	read_head(u, &r);
	ck_assert_int_gt(r.content_length, (int64_t)sizeof(buf));
	/* One record holds the whole body: after a first small read the
	 * rest is inside OpenSSL or our buffer, not on the socket. */
	ck_assert_int_gt(up_read_body(u, buf, sizeof(buf), deadline), 0);
	while (!up_body_done(u)) {
		ck_assert(up_pending(u));
		n = up_read_body(u, buf, sizeof(buf), deadline);
		ck_assert_int_gt(n, 0);
	}
	up_free(u);
	tls_free();
}
END_TEST

/* The proxy's one map from an upstream failure to the client's status. */
START_TEST(test_up_fail_status)
{
	enum up_fail	 f;

	for (f = UP_ERR_NONE; f <= UP_ERR_USAGE; f++)
		ck_assert_int_eq(up_fail_status(f),
		    f == UP_ERR_TIMEOUT ? 504 : 502);
}
END_TEST

Suite *
upstream_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("upstream");
	tc = tcase_create("standin");
	tcase_add_unchecked_fixture(tc, setup_world, teardown_world);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_generate);
	tcase_add_test(tc, test_generate_ip);
	tcase_add_test(tc, test_sse_pieces);
	tcase_add_test(tc, test_keepalive);
	tcase_add_test(tc, test_reconnect);
	tcase_add_test(tc, test_keepalive_race);
	tcase_add_test(tc, test_resume);
	tcase_add_test(tc, test_bad_ca);
	tcase_add_test(tc, test_system_store);
	tcase_add_test(tc, test_wronghost);
	tcase_add_test(tc, test_refused);
	tcase_add_test(tc, test_handshake_timeout);
	tcase_add_test(tc, test_tls_init);
	tcase_add_test(tc, test_stall);
	tcase_add_test(tc, test_close_before_headers);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_stale);
	tcase_add_test(tc, test_reset_midstream);
	tcase_add_test(tc, test_stall_midstream);
	tcase_add_test(tc, test_error_status);
	tcase_add_test(tc, test_large_request);
	tcase_add_test(tc, test_misuse);
	tcase_add_test(tc, test_pending);
	tcase_add_test(tc, test_upgrade);
	tcase_add_loop_test(tc, test_raw, 0,
	    (int)(sizeof(raw_cases) / sizeof(raw_cases[0])));
	tcase_add_test(tc, test_raw_limits);
	tcase_add_test(tc, test_raw_tls12_resume);
	tcase_add_test(tc, test_raw_ipv6);
	suite_add_tcase(s, tc);
	tc = tcase_create("verdicts");
	tcase_add_test(tc, test_up_fail_status);
	suite_add_tcase(s, tc);
	return s;
}
