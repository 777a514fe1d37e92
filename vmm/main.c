/* main.c: cella-vm entry point (placeholder until the core lands). */
int main(void)
{
	return 4;
}
