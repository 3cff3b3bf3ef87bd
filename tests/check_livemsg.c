/*
 * Unit tests of livemsg.c: the model of a Live session's setup, what a
 * server message holds for the pool (setupComplete, usageMetadata), and
 * what an upstream close says of the key.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "check_suites.h"
#include "classify.h"
#include "livemsg.h"
#include "shm.h"

static int
setup_model(const char *msg, char *model, size_t len)
{
	return lm_setup_model((const uint8_t *)msg, strlen(msg), model, len);
}

START_TEST(test_setup_model)
{
	char	 m[64];

	ck_assert_int_eq(setup_model("{\"setup\":{\"model\":\"models/gemini-"
	    "live-2.5-flash\",\"generationConfig\":{}}}", m, sizeof(m)), 0);
	ck_assert_str_eq(m, "gemini-live-2.5-flash");
	ck_assert_int_eq(setup_model("{\"setup\":{\"model\":\"gemini-x\"}}",
	    m, sizeof(m)), 0);
	ck_assert_str_eq(m, "gemini-x");
	/* A setup without a usable model: the default model's. */
	ck_assert_int_eq(setup_model("{\"setup\":{}}", m, sizeof(m)), 1);
	ck_assert_int_eq(setup_model("{\"setup\":{\"model\":\"models/\"}}", m,
	    sizeof(m)), 1);
	ck_assert_int_eq(setup_model("{\"setup\":{\"model\":\"a/../b\"}}", m,
	    sizeof(m)), 1);
	ck_assert_int_eq(setup_model("{\"setup\":{\"model\":7}}", m,
	    sizeof(m)), 1);
	ck_assert_int_eq(setup_model("{\"setup\":{\"model\":\"0123456789"
	    "0123456789\"}}", m, 8), 1);
	/* Not a setup at all. */
	ck_assert_int_eq(setup_model("{\"clientContent\":{}}", m, sizeof(m)),
	    -1);
	ck_assert_int_eq(setup_model("{\"setup\":\"x\"}", m, sizeof(m)), -1);
	ck_assert_int_eq(setup_model("setup", m, sizeof(m)), -1);
	ck_assert_int_eq(setup_model("", m, sizeof(m)), -1);
}
END_TEST

static int
server(const char *msg, struct shm_tokens *t)
{
	return lm_server((const uint8_t *)msg, strlen(msg), t);
}

START_TEST(test_server)
{
	struct shm_tokens	 t;

	ck_assert_int_eq(server("{\"setupComplete\":{}}", &t),
	    LM_SETUP_COMPLETE);
	ck_assert_int_eq(server("{\"serverContent\":{\"modelTurn\":{\"parts\":"
	    "[{\"text\":\"usageMetadata\"}]}}}", &t), 0);
	ck_assert_int_eq(server("{\"serverContent\":{\"turnComplete\":true},"
	    "\"usageMetadata\":{\"promptTokenCount\":12,\"responseTokenCount\":"
	    "10,\"totalTokenCount\":22,\"promptTokensDetails\":[{\"modality\":"
	    "\"AUDIO\",\"tokenCount\":12}]}}", &t), LM_USAGE);
	ck_assert_int_eq(t.prompt, 12);
	ck_assert_int_eq(t.candidates, 10);
	ck_assert_int_eq(t.total, 22);
	ck_assert_int_eq(t.cached, 0);
	ck_assert_int_eq(server("{\"usageMetadata\":{\"promptTokenCount\":3,"
	    "\"cachedContentTokenCount\":2,\"thoughtsTokenCount\":4,"
	    "\"totalTokenCount\":-5}}", &t), LM_USAGE);
	ck_assert_int_eq(t.prompt, 3);
	ck_assert_int_eq(t.cached, 2);
	ck_assert_int_eq(t.thoughts, 4);
	ck_assert_int_eq(t.total, 0);	/* nonsense counts nothing */
	ck_assert_int_eq(server("{\"usageMetadata\":", &t), 0);
	ck_assert_int_eq(t.prompt, 0);
}
END_TEST

static enum gem_action
verdict(int code, const char *reason)
{
	struct gem_verdict	 v;

	lm_close_verdict(code, reason, strlen(reason), &v);
	return v.action;
}

START_TEST(test_close_verdict)
{
	ck_assert_int_eq(verdict(1011, "RESOURCE_EXHAUSTED: You exceeded your "
	    "current quota, please check your plan and billing details."),
	    GEM_COOL);
	ck_assert_int_eq(verdict(1007, "API key not valid. Please pass a "
	    "valid API key."), GEM_INVALID);
	ck_assert_int_eq(verdict(1008, "Permission denied: Consumer "
	    "'api_key:AIza...' has been suspended."), GEM_INVALID);
	ck_assert_int_eq(verdict(1008, "Method doesn't allow unregistered "
	    "callers"), GEM_INVALID);
	ck_assert_int_eq(verdict(1011, "Internal error encountered."),
	    GEM_RETRY);
	/* The session's own business: passed through untouched. */
	ck_assert_int_eq(verdict(1007, "Request contains an invalid "
	    "argument."), GEM_PASS);
	ck_assert_int_eq(verdict(1000, ""), GEM_PASS);
	ck_assert_int_eq(verdict(4001, "quota"), GEM_PASS);
}
END_TEST

Suite *
livemsg_suite(void)
{
	Suite	*s = suite_create("livemsg");
	TCase	*tc = tcase_create("livemsg");

	tcase_add_test(tc, test_setup_model);
	tcase_add_test(tc, test_server);
	tcase_add_test(tc, test_close_verdict);
	suite_add_tcase(s, tc);
	return s;
}
