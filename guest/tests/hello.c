/* hello.c: the smallest program; also the start-time benchmark guest. */
#include "libtest.h"

TEST_PROGRAM("hello");

int main(int argc, char **argv)
{
	printf("Hello from cella test guest\n");
	printf("PASS hello\n");
	return 0;
}
