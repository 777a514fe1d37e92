/* hello.c: the smallest program; also the start-time benchmark guest.
 * lines=N: print N numbered filler lines first (console delivery tests). */
#include "libtest.h"

TEST_PROGRAM("hello");

int main(int argc, char **argv)
{
	uint64_t lines = 0;

	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], "lines=", 6) && !parse_u64(argv[i] + 6, &lines))
			fail("hello: bad lines=%s", argv[i] + 6);
	for (uint64_t i = 0; i < lines; i++)
		printf("filler line %llu of the console flush test ..........................\n",
		       (unsigned long long)i);
	printf("Hello from cella test guest\n");
	printf("PASS hello\n");
	return 0;
}
