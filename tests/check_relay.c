/*
 * Unit tests of the decisions relay.c takes when an answer breaks off
 * after its head went to the client (issue 12, honest streams): why it
 * broke, for the metric and the access log; when only a reset shows the
 * client the cut; and the counter shm_note_broken() keeps, as /metrics
 * shows it.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_suites.h"
#include "px.h"
#include "shm.h"
#include "status.h"
#include "upstream.h"
#include "util.h"

START_TEST(test_broken_why)
{
	ck_assert_int_eq(relay_broken_why(UP_ERR_IO), SHM_B_RESET);
	ck_assert_int_eq(relay_broken_why(UP_ERR_TLS), SHM_B_RESET);
	ck_assert_int_eq(relay_broken_why(UP_ERR_TIMEOUT), SHM_B_TIMEOUT);
	ck_assert_int_eq(relay_broken_why(UP_ERR_CLOSED), SHM_B_CLOSED);
	ck_assert_int_eq(relay_broken_why(UP_ERR_PROTOCOL), SHM_B_MALFORMED);
	/* Whatever else failed, it is a broken connection. */
	ck_assert_int_eq(relay_broken_why(UP_ERR_NONE), SHM_B_RESET);
	ck_assert_str_eq(shm_broken_names[SHM_B_RESET], "reset");
	ck_assert_str_eq(shm_broken_names[SHM_B_TIMEOUT], "timeout");
	ck_assert_str_eq(shm_broken_names[SHM_B_CLOSED], "closed");
	ck_assert_str_eq(shm_broken_names[SHM_B_MALFORMED], "malformed");
}
END_TEST

START_TEST(test_cut_needs_reset)
{
	/* Chunks to a 1.1 client, a Content-Length to either: the close
	 * shows the cut.  A body only the close frames: a reset. */
	ck_assert_int_eq(relay_cut_needs_reset(1, 1), 0);
	ck_assert_int_eq(relay_cut_needs_reset(0, 1), 0);
	ck_assert_int_eq(relay_cut_needs_reset(0, 0), 0);
	ck_assert_int_eq(relay_cut_needs_reset(1, 0), 1);
}
END_TEST

START_TEST(test_broken_counted)
{
	struct shm_sizes	 sz;
	struct shm_header	*h;
	struct shm_key_spec	 ks[1] = { { "k1", "11111111", "k1", 0 } };
	struct shm_model_spec	 ms[2] = {
		{ "m0", -1, -1, -1, -1 },
		{ "m1", -1, -1, -1, -1 },
	};
	char			*out;
	size_t			 len;

	shm_sizes_for(1, 2, 2, 0, &sz);
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(shm_publish(h, ks, 1, ms, 2, 0), 0);
	shm_note_broken(h, 0, SHM_B_CLOSED);
	shm_note_broken(h, 0, SHM_B_CLOSED);
	shm_note_broken(h, 1, SHM_B_TIMEOUT);
	shm_note_broken(h, 1, SHM_B_N);		/* ignored */
	shm_note_broken(h, 7, SHM_B_RESET);	/* no such model: ignored */
	ck_assert_uint_eq(SHM_MODELS(h)[0].m_broken[SHM_B_CLOSED], 2);
	out = metrics_text(h, now_ms(), &len);
	ck_assert_ptr_nonnull(out);
#define HAS(s)	ck_assert_msg(strstr(out, s) != NULL, "missing: %s", s)
	HAS("# TYPE gemini_looper_streams_broken_total counter\n");
	HAS("gemini_looper_streams_broken_total{model=\"m0\",why=\"closed\"} "
	    "2\n");
	HAS("gemini_looper_streams_broken_total{model=\"m0\",why=\"reset\"} "
	    "0\n");
	HAS("gemini_looper_streams_broken_total{model=\"m1\",why=\"timeout\"} "
	    "1\n");
	HAS("gemini_looper_streams_broken_total{model=\"m1\","
	    "why=\"malformed\"} 0\n");
#undef HAS
	free(out);
	shm_destroy(h);
}
END_TEST

Suite *
relay_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("relay");
	tc = tcase_create("broken");
	tcase_add_test(tc, test_broken_why);
	tcase_add_test(tc, test_cut_needs_reset);
	tcase_add_test(tc, test_broken_counted);
	suite_add_tcase(s, tc);
	return s;
}
