"""What the docs test did not run as written, listed at the end of the session (never skipped silently)."""
NOT_AS_WRITTEN = []  # lines: "README.md:23 skipped: why" / "... ran with A => B"
TIMES = []           # (document, wall seconds, CPU seconds, [(block, wall, CPU) of each block run])


def pytest_terminal_summary(terminalreporter):
    if NOT_AS_WRITTEN:
        terminalreporter.section("docs blocks not run as written")
        for line in NOT_AS_WRITTEN:
            terminalreporter.write_line(line)
    if TIMES:
        terminalreporter.section("docs blocks run")
        for doc, wall, cpu, log in TIMES:
            terminalreporter.write_line(f"{doc}: {len(log)} blocks in {wall:.0f} s ({cpu:.0f} s of CPU)")
            if terminalreporter.verbosity > 0:
                for block, block_wall, block_cpu in log:
                    terminalreporter.write_line(f"  {block.where}: {block_wall:.1f} s ({block_cpu:.1f} s of CPU)")
