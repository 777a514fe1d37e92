/* sandbox_pre.c: every seccomp filter a restore may install, compiled
 * ahead into BPF (sandbox.h, struct sandbox_filters) so that a standby
 * worker's request loads one without running libseccomp. */
#include "sandbox/sandbox.h"

#include <linux/filter.h>
#include <string.h>

int sandbox_filters_build(struct sandbox_filters *sf)
{
	int ret = 0;

	memset(sf, 0, sizeof(*sf));
	for (int af = 0; !ret && af < 2; af++)
		for (int hp = 0; !ret && hp < 2; hp++)
			ret = sandbox_process_filter(af, hp, &sf->process[af][hp]);
	for (int k = 0; !ret && k < SANDBOX_THREADS; k++)
		ret = sandbox_thread_filter((enum sandbox_thread)k, &sf->thread[k]);
	if (ret)
		sandbox_filters_free(sf);
	return ret;
}

void sandbox_filters_free(struct sandbox_filters *sf)
{
	if (!sf)
		return;
	for (int af = 0; af < 2; af++)
		for (int hp = 0; hp < 2; hp++) {
			sandbox_thread_filter_free(sf->process[af][hp]);
			sf->process[af][hp] = NULL;
		}
	for (int k = 0; k < SANDBOX_THREADS; k++) {
		sandbox_thread_filter_free(sf->thread[k]);
		sf->thread[k] = NULL;
	}
}
