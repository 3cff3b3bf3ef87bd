/*
 * The upstream's TLS: one client SSL_CTX per worker process, and the
 * per-connection set-up that upstream.c asks for.
 *
 * The master builds the context (tls_prepare) after each config it loads,
 * before it forks the workers of that config, and each worker's tls_init()
 * takes it as it inherited it.  Memory is why: the first context in a
 * process fills OpenSSL's caches (providers, algorithms: about 400 KiB) and
 * the trust store is parsed whole (800 KiB more for the system's), which
 * built in every worker is that much private memory per worker, and built
 * once in the master is shared by all, copy-on-write.  A context created
 * before a fork is fine to use in the child (nginx does the same); OpenSSL
 * reseeds its random generator in a child by itself.  When the master
 * could not build it, each worker tries again, and says why it failed.  A
 * reload replaces the workers, so a worker's context never changes.  No
 * lock is taken here.
 *
 * Verification is never optional: SSL_VERIFY_PEER against the configured
 * CA file or the system store, plus the host name (or the IP address, for
 * an IP literal) checked against the certificate.  A certificate that does
 * not verify fails the handshake.
 *
 * Sessions: TLS 1.3 sends its session tickets after the handshake, mixed
 * into the first application data, so a session taken with SSL_get1_session
 * right after the handshake is not resumable yet.  The new-session callback
 * instead fires whenever a usable session (1.2 or 1.3) arrives and stores it
 * in the slot the connection's owner gave to tls_client(); upstream.c offers
 * it again with SSL_set_session on its next connection.
 */
#include <sys/socket.h>

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "tls.h"

static SSL_CTX			*tls_ctx;
static const struct config	*tls_ctx_cfg;	/* tls_prepare() built it */

/* ALPN: HTTP/1.1 only, in wire format (length-prefixed). */
static const unsigned char tls_alpn[] = "\x08http/1.1";

/*
 * A session the server has just given us: keep it in the owner's slot.
 * Returning 1 tells OpenSSL the reference is ours now.
 */
static int
tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
	SSL_SESSION	**slot;

	if ((slot = SSL_get_app_data(ssl)) == NULL)
		return 0;
	if (*slot != NULL)
		SSL_SESSION_free(*slot);
	*slot = sess;
	return 1;
}

/* The reason of the newest OpenSSL error, or dflt. */
static const char *
tls_reason(const char *dflt)
{
	unsigned long	 e;
	const char	*r;

	if ((e = ERR_peek_last_error()) == 0 ||
	    (r = ERR_reason_error_string(e)) == NULL)
		return dflt;
	return r;
}

/*
 * Build the process's client context.  Returns 0, or -1 with err set.
 * Called again, it replaces the previous context, unless that is the one
 * tls_prepare() built for this very cfg (a worker's inheritance).
 */
int
tls_init(const struct config *cfg, char *err, size_t errlen)
{
	SSL_CTX		*ctx;

	if (tls_ctx != NULL && tls_ctx_cfg == cfg)
		return 0;
	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errlen, "SSL_CTX_new: %s",
		    tls_reason("out of memory"));
		return -1;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		snprintf(err, errlen, "cannot require TLS 1.2: %s",
		    tls_reason("unknown error"));
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (cfg->upstream_ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, cfg->upstream_ca_file,
		    NULL) != 1) {
			snprintf(err, errlen, "upstream_ca_file %s: %s",
			    cfg->upstream_ca_file,
			    tls_reason("no certificate could be loaded"));
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "cannot load the system's trusted "
		    "certificates: %s", tls_reason("unknown error"));
		goto fail;
	}

	/*
	 * The client cache only feeds tls_new_session(): clients never look
	 * sessions up in OpenSSL's internal store, so it is not filled.
	 */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, tls_new_session);

	/* Same arguments on a retried SSL_write, but a moved buffer is fine. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/*
	 * One read() for whatever the socket holds instead of one for each
	 * record's header and one for its body.  upstream.c asks
	 * SSL_has_pending(), which counts what was read ahead, before it
	 * polls.
	 */
	SSL_CTX_set_read_ahead(ctx, 1);
	/*
	 * Many servers close an idle keep-alive connection without a
	 * close_notify.  Treated as an error, that EOF would send a fatal
	 * alert and mark the session unresumable; HTTP's own framing tells
	 * a cut answer from a whole one.
	 */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);

	/* SSL_CTX_set_alpn_protos() returns 0 on success. */
	if (SSL_CTX_set_alpn_protos(ctx, tls_alpn, sizeof(tls_alpn) - 1) != 0) {
		snprintf(err, errlen, "cannot set ALPN: %s",
		    tls_reason("unknown error"));
		goto fail;
	}

	tls_free();
	tls_ctx = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return -1;
}

/*
 * Master: build the context for cfg, the config the next workers get,
 * before forking them (see the top of this file).  Called after each
 * config is loaded, at start and on reload.  On failure no context is
 * kept: the workers build their own, and report what fails.
 */
void
tls_prepare(const struct config *cfg)
{
	char	 err[256];

	tls_free();
	if (tls_init(cfg, err, sizeof(err)) == -1) {
		log_debug("upstream TLS: %s (left to the workers)", err);
		return;
	}
	tls_ctx_cfg = cfg;
}

void
tls_free(void)
{
	SSL_CTX_free(tls_ctx);
	tls_ctx = NULL;
	tls_ctx_cfg = NULL;
}

/*
 * A client connection over the connected socket fd to host (a name or an
 * IP literal, without brackets).  *slot holds the session to resume (or
 * NULL) and receives the sessions the server sends; it must outlive the
 * SSL.  The handshake is left to the caller (SSL_connect).  Returns NULL
 * with err set.
 */
SSL *
tls_client(int fd, const char *host, SSL_SESSION **slot, char *err,
    size_t errlen)
{
	SSL			*ssl;
	X509_VERIFY_PARAM	*param;
	unsigned char		 addr[sizeof(struct in6_addr)];
	int			 is_ip;

	if (tls_ctx == NULL) {
		snprintf(err, errlen, "TLS is not initialised");
		return NULL;
	}
	ERR_clear_error();
	if ((ssl = SSL_new(tls_ctx)) == NULL) {
		snprintf(err, errlen, "SSL_new: %s",
		    tls_reason("out of memory"));
		return NULL;
	}
	if (SSL_set_fd(ssl, fd) != 1) {
		snprintf(err, errlen, "SSL_set_fd: %s",
		    tls_reason("unknown error"));
		goto fail;
	}

	is_ip = inet_pton(AF_INET, host, addr) == 1 ||
	    inet_pton(AF_INET6, host, addr) == 1;
	param = SSL_get0_param(ssl);
	if (is_ip) {
		/* RFC 6066: no SNI for an address; its SAN must match. */
		if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1) {
			snprintf(err, errlen, "cannot verify the address "
			    "%s: %s", host, tls_reason("unknown error"));
			goto fail;
		}
	} else {
		if (SSL_set_tlsext_host_name(ssl, host) != 1) {
			snprintf(err, errlen, "cannot send the name %s: %s",
			    host, tls_reason("unknown error"));
			goto fail;
		}
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, host) != 1) {
			snprintf(err, errlen, "cannot verify the name %s: %s",
			    host, tls_reason("unknown error"));
			goto fail;
		}
	}

	/* A session that cannot be offered is of no further use. */
	if (*slot != NULL && (!SSL_SESSION_is_resumable(*slot) ||
	    SSL_set_session(ssl, *slot) != 1)) {
		SSL_SESSION_free(*slot);
		*slot = NULL;
	}
	SSL_set_app_data(ssl, slot);
	SSL_set_connect_state(ssl);
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

/*
 * Why a handshake or a read failed with SSL_ERROR_SSL, for a log line:
 * "certificate verify failed (hostname mismatch)", or OpenSSL's reason
 * ("wrong version number", "tlsv1 alert handshake failure", ...).
 */
void
tls_strerror(SSL *ssl, char *buf, size_t len)
{
	long	 vr;

	if (ssl != NULL && (vr = SSL_get_verify_result(ssl)) != X509_V_OK) {
		snprintf(buf, len, "certificate verify failed (%s)",
		    X509_verify_cert_error_string(vr));
		return;
	}
	snprintf(buf, len, "%s", tls_reason("TLS error"));
}
