"""What a `grouper group` process loads and sets before it groups (issue 20: start-up is part of the
whole command's time): a quiet run from the plan cache loads neither the terminal output (rich), nor
the DSL parser (lark), nor pyarrow.compute, nor the scheme language's AST classes (the plan cache
holds the AST apart), nor the DIP language, nor the version wing's crosswalk and dated grouping;
`--threads N` sizes Polars' pool before Polars loads."""
import os
import subprocess
import sys
from pathlib import Path

MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"


def _python(code: str, tmp_path: Path, **env) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                          env={**os.environ, "GROUPER_CACHE_DIR": str(tmp_path / "cache"), **env}).stdout


def test_a_quiet_run_from_the_plan_cache_loads_no_terminal_output_parser_or_pyarrow_compute(tmp_path):
    cases = tmp_path / "cases.csv"
    cases.write_text("id,sex,age,dx,proc\n1,1,40,K35.800,47.0100\n2,2,30,XX,\n", encoding="utf-8")
    run = (f"import sys; from grouper.cli import main; "
           f"code = main(['group', {str(cases)!r}, '-o', {str(tmp_path / 'r.parquet')!r}, '--scheme', {str(MINI)!r}, '-q']); "
           f"print(code, sorted(m for m in {NOT_LOADED!r} if m in sys.modules))")
    _python(run, tmp_path)                      # fills the plan cache (parses the pack: lark)
    assert _python(run, tmp_path, GROUPER_CONFIG="", XDG_CONFIG_HOME=str(tmp_path)).strip() == "0 []"   # no config file


NOT_LOADED = ("rich", "lark", "pyarrow.compute", "tomllib", "grouper.lang.ast", "grouper.dip.scheme", "grouper.dip.ast",
              "grouper.versions.crosswalk", "grouper.versions.dated")


def test_the_grouper_process_exits_with_its_code_and_its_output_whole(tmp_path):
    """`python -m grouper` (cli.run) ends without the interpreter's teardown: the exit code, stdout
    and stderr are the command's all the same, and the outputs are complete."""
    cases = tmp_path / "cases.csv"
    cases.write_text("id,sex,age,dx,proc\n1,1,40,K35.800,47.0100\n2,2,30,XX,\n", encoding="utf-8")
    env = {**os.environ, "GROUPER_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "r.csv"
    done = subprocess.run([sys.executable, "-m", "grouper", "group", str(cases), "-o", str(out), "--scheme", str(MINI)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "2" in done.stderr and out.read_text(encoding="utf-8-sig").count("\n") == 3
    missing = subprocess.run([sys.executable, "-m", "grouper", "group", str(tmp_path / "none.csv"), "-o", str(out),
                              "--scheme", str(MINI)], capture_output=True, text=True, env=env)
    assert missing.returncode == 3 and "error:" in missing.stderr
    version = subprocess.run([sys.executable, "-m", "grouper", "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0 and version.stdout.startswith("grouper ")


def test_under_cprofile_the_process_ends_the_ordinary_way_so_the_profile_is_written(tmp_path):
    """cProfile writes its figures after the command returns: run() must not skip that (Python 3.11
    sets sys.setprofile; 3.12+ registers with sys.monitoring instead)."""
    cases = tmp_path / "cases.csv"
    cases.write_text("id,sex,age,dx,proc\n1,1,40,K35.800,47.0100\n", encoding="utf-8")
    profile = tmp_path / "run.prof"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "grouper", "group", str(cases),
                           "-o", str(tmp_path / "r.csv"), "--scheme", str(MINI), "-q"],
                          capture_output=True, text=True, env={**os.environ, "GROUPER_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert profile.stat().st_size > 0


def test_threads_sizes_the_polars_pool_unless_polars_max_threads_says_otherwise(tmp_path):
    probe = ("import sys; from grouper.cli import _size_polars_pool; assert 'polars' not in sys.modules; "
             "_size_polars_pool(sys.argv[1:]); import polars; print(polars.thread_pool_size())")
    env = {k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"}

    def pool(*argv, **extra):
        return subprocess.run([sys.executable, "-c", probe, *argv], check=True, capture_output=True, text=True,
                              env={**env, **extra}).stdout.strip()

    assert pool("group", "in.csv", "-o", "out.csv", "--threads", "1") == "1"
    assert pool("group", "in.csv", "-o", "out.csv", "--threads=1") == "1"
    assert pool("group", "in.csv", "-o", "out.csv", "--threads", "1", POLARS_MAX_THREADS="2") == "2"
    assert pool("check", "--threads", "1") == pool("check")     # only `group` has --threads


def test_openblas_runs_on_one_thread_unless_the_environment_says_otherwise():
    """NumPy's OpenBLAS starts a thread per core when NumPy loads (0.05–0.1 CPU-s of start-up) for
    linear algebra grouper never does: the CLI asks for one, unless a BLAS thread variable is set."""
    probe = ("import os, sys; from grouper.cli import _quiet_blas; assert 'numpy' not in sys.modules; "
             "_quiet_blas(); print(os.environ.get('OPENBLAS_NUM_THREADS'))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")}

    def blas(**extra):
        return subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True,
                              env={**env, **extra}).stdout.strip()

    assert blas() == "1"
    assert blas(OPENBLAS_NUM_THREADS="4") == "4"
    assert blas(OMP_NUM_THREADS="2") == "None"
