/* --drive and --net parsing: every key, defaults, and every refusal with its message. */
#include "cli.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static char err[256];

static int parse(char **argv, int argc, struct vmm_config *config)
{
	err[0] = '\0';
	return cli_parse(argc, argv, config, err, sizeof(err));
}

static void test_drive_with_every_key(void **state)
{
	(void)state;
	char spec[] = "id=rootfs,path=/img/root.ext4,ro=on,root=on,io_engine=Sync,cache=Writeback";
	struct drive_config drive;
	assert_int_equal(cli_parse_drive(spec, &drive, err, sizeof(err)), 0);
	assert_string_equal(drive.id, "rootfs");
	assert_string_equal(drive.path, "/img/root.ext4");
	assert_true(drive.read_only);
	assert_true(drive.root);
	assert_int_equal(drive.engine, IO_ENGINE_SYNC);
	assert_int_equal(drive.cache, CACHE_WRITEBACK);
}

static void test_drive_defaults_are_writable_async_not_root(void **state)
{
	(void)state;
	char spec[] = "id=data,path=/d.img";
	struct drive_config drive;
	assert_int_equal(cli_parse_drive(spec, &drive, err, sizeof(err)), 0);
	assert_false(drive.read_only);
	assert_false(drive.root);
	assert_int_equal(drive.engine, IO_ENGINE_ASYNC);
	/* Firecracker's default cache type. */
	assert_int_equal(drive.cache, CACHE_UNSAFE);
}

static void test_drive_refusals_name_the_problem(void **state)
{
	(void)state;
	static const struct {
		const char *spec;
		const char *words;
	} cases[] = {
	    {"path=/d.img", "id= and path="},
	    {"id=d", "id= and path="},
	    {"id=d,path=/d.img,ro=maybe", "ro='maybe'"},
	    {"id=d,path=/d.img,io_engine=Turbo", "io_engine='Turbo'"},
	    {"id=d,path=/d.img,cache=none", "cache='none': must be Unsafe or Writeback"},
	    {"id=d,path=/d.img,colour=red", "unknown key 'colour'"},
	    {"id=d,path", "'path' is not key=value"},
	    {"id=d,=x,path=/d.img", "'=x' is not key=value"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char spec[128];
		struct drive_config drive;
		strcpy(spec, cases[i].spec);
		assert_int_equal(cli_parse_drive(spec, &drive, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, cases[i].words));
	}
}

static void test_net_with_mac_and_without(void **state)
{
	(void)state;
	char with_mac[] = "id=eth0,tap=tap0,mac=02:aB:00:00:00:01";
	char without[] = "id=eth1,tap=tap1";
	struct net_config net;
	const uint8_t expected[6] = {0x02, 0xab, 0, 0, 0, 1};
	assert_int_equal(cli_parse_net(with_mac, &net, err, sizeof(err)), 0);
	assert_true(net.has_mac);
	assert_memory_equal(net.mac, expected, 6);
	assert_string_equal(net.tap, "tap0");
	assert_int_equal(cli_parse_net(without, &net, err, sizeof(err)), 0);
	assert_false(net.has_mac);
	assert_string_equal(net.id, "eth1");
}

static void test_net_refusals_name_the_problem(void **state)
{
	(void)state;
	static const struct {
		const char *spec;
		const char *words;
	} cases[] = {
	    {"id=eth0", "id= and tap="},
	    {"tap=tap0", "id= and tap="},
	    {"id=eth0,tap=tap0,mac=02:00:00:00:00", "mac="},
	    {"id=eth0,tap=tap0,mac=02:00:00:00:00:0g", "mac="},
	    {"id=eth0,tap=tap0,mac=02:00:00:00:00:001", "mac="},
	    {"id=eth0,tap=a-very-long-tap-name", "at most 15"},
	    {"id=eth0,tap=tap0,mtu=9000", "unknown key 'mtu'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char spec[128];
		struct net_config net;
		strcpy(spec, cases[i].spec);
		assert_int_equal(cli_parse_net(spec, &net, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, cases[i].words));
	}
}

static void test_command_line_collects_drives_and_nets_in_order(void **state)
{
	(void)state;
	char a0[] = "wisp", a1[] = "--kernel", a2[] = "k", a3[] = "--drive", a4[] = "id=a,path=/a",
	     a5[] = "--drive", a6[] = "id=b,path=/b,root=on", a7[] = "--net", a8[] = "id=n,tap=t";
	char *argv[] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, NULL};
	struct vmm_config config;
	assert_int_equal(parse(argv, 9, &config), CLI_RUN);
	assert_int_equal(config.nr_drives, 2);
	assert_string_equal(config.drives[0].id, "a");
	assert_true(config.drives[1].root);
	assert_int_equal(config.nr_nets, 1);
	assert_string_equal(config.nets[0].tap, "t");
}

static void test_duplicate_ids_and_two_roots_are_refused(void **state)
{
	(void)state;
	struct vmm_config config;
	{
		char a0[] = "wisp", a1[] = "--kernel", a2[] = "k", a3[] = "--drive",
		     a4[] = "id=a,path=/a", a5[] = "--drive", a6[] = "id=a,path=/b";
		char *argv[] = {a0, a1, a2, a3, a4, a5, a6, NULL};
		assert_int_equal(parse(argv, 7, &config), -EINVAL);
		assert_non_null(strstr(err, "'a' is used twice"));
	}
	{
		char a0[] = "wisp", a1[] = "--kernel", a2[] = "k", a3[] = "--drive",
		     a4[] = "id=a,path=/a,root=on", a5[] = "--drive", a6[] = "id=b,path=/b,root=on";
		char *argv[] = {a0, a1, a2, a3, a4, a5, a6, NULL};
		assert_int_equal(parse(argv, 7, &config), -EINVAL);
		assert_non_null(strstr(err, "only one --drive"));
	}
	{
		char a0[] = "wisp", a1[] = "--kernel", a2[] = "k", a3[] = "--net",
		     a4[] = "id=x,tap=t0", a5[] = "--net", a6[] = "id=y,tap=t0";
		char *argv[] = {a0, a1, a2, a3, a4, a5, a6, NULL};
		assert_int_equal(parse(argv, 7, &config), -EINVAL);
		assert_non_null(strstr(err, "used twice"));
	}
}

static void test_too_many_drives_are_refused(void **state)
{
	(void)state;
	char storage[CONFIG_MAX_DRIVES + 1][32];
	char *argv[3 + 2 * (CONFIG_MAX_DRIVES + 1) + 1];
	char a0[] = "wisp", a1[] = "--kernel", a2[] = "k", flag[] = "--drive";
	int argc = 0;
	struct vmm_config config;
	argv[argc++] = a0;
	argv[argc++] = a1;
	argv[argc++] = a2;
	for (int i = 0; i <= CONFIG_MAX_DRIVES; i++) {
		snprintf(storage[i], sizeof(storage[i]), "id=d%d,path=/d%d", i, i);
		argv[argc++] = flag;
		argv[argc++] = storage[i];
	}
	argv[argc] = NULL;
	assert_int_equal(parse(argv, argc, &config), -EINVAL);
	assert_non_null(strstr(err, "at most 8 --drive"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_drive_with_every_key),
	    cmocka_unit_test(test_drive_defaults_are_writable_async_not_root),
	    cmocka_unit_test(test_drive_refusals_name_the_problem),
	    cmocka_unit_test(test_net_with_mac_and_without),
	    cmocka_unit_test(test_net_refusals_name_the_problem),
	    cmocka_unit_test(test_command_line_collects_drives_and_nets_in_order),
	    cmocka_unit_test(test_duplicate_ids_and_two_roots_are_refused),
	    cmocka_unit_test(test_too_many_drives_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
