"""manage.py evaluate benchmark|judge|methods: start a benchmark or judge run from a terminal
and follow its job with a progress bar, on the workers or (--here) in this process. The
judge's API key comes from RELSIM_JUDGE_API_KEY in the environment, never from an argument
(arguments end up in shell histories and process lists)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.forms import Form

from core.cli import acting_user
from evaluation import benchmark_selectors as selectors
from evaluation.benchmark_forms import BenchmarkForm
from evaluation.benchmark_services import benchmark_start
from evaluation.judge_forms import JudgeForm
from evaluation.judge_services import JudgeRunBusy, judge_resume, judge_start
from evaluation.models import BenchmarkRun, JudgeRun
from training import job_cli
from training.models import Job


def _words(text: str | None) -> list[str]:
    return [word.strip() for word in (text or "").split(",") if word.strip()]


def _form_errors(form: Form) -> str:
    lines = []
    for field, errors in form.errors.items():
        where = "" if field == "__all__" else f"--{field.replace('_', '-')}: "
        lines += [f"{where}{error}" for error in errors]
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Start a benchmark or judge run and follow its job; `methods` lists method keys."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="what", required=True)
        commands.add_parser("methods", help="List the method keys a benchmark can compare.")

        bench = commands.add_parser("benchmark", help="Start a retrieval benchmark run.")
        bench.add_argument("--name", required=True)
        bench.add_argument("--methods", help="Method keys, comma-separated (default: all).")
        bench.add_argument("--n-test", type=int, help="Most test images (default: the paper's).")
        bench.add_argument("--n-distractors", type=int, help="Most distractors.")
        bench.add_argument("--n-queries", type=int, help="Queries (default: the paper's 1,000).")
        bench.add_argument("--k", type=int, default=selectors.DEFAULT_K, help="Top-k kept.")
        bench.add_argument("--seed", type=int, default=0)

        judge = commands.add_parser(
            "judge", help="Judge a benchmark run (key: RELSIM_JUDGE_API_KEY only)."
        )
        judge.add_argument("--benchmark", type=int, help="The benchmark run's id.")
        judge.add_argument("--resume", type=int, help="Resume this judge run instead.")
        judge.add_argument("--url", default=settings.RELSIM_JUDGE_URL, help="API root URL.")
        judge.add_argument("--model", default=settings.RELSIM_JUDGE_MODEL or "gpt-4o")
        judge.add_argument("--temperature", type=float, default=0.7)
        judge.add_argument("--methods", help="Method keys, comma-separated (default: all).")
        judge.add_argument("--both-orders", action="store_true", help="Ask both orders.")
        judge.add_argument("--concurrency", type=int, default=4)
        judge.add_argument("--price-input", type=float, help="Price per 1M input tokens.")
        judge.add_argument("--price-output", type=float, help="Price per 1M output tokens.")

        for sub in (bench, judge):
            sub.add_argument(
                "--here", action="store_true", help="Run in this process instead of on a worker."
            )
            sub.add_argument("--no-wait", action="store_true", help="Queue it and return.")
            sub.add_argument("--user", help="Act as this user (recorded as the run's creator).")

    def handle(self, *args: Any, **options: Any) -> None:
        what = options["what"]
        if what == "methods":
            for method in selectors.available_methods():
                self.stdout.write(f"{method.key}\t{method.choice_label}")
            return
        user = acting_user(options, "evaluation.add_study")
        enqueue = not options["here"]
        if what == "benchmark":
            run = self._benchmark(options, user, enqueue)
            job = run.job
            where = f"Benchmark run #{run.pk}"
        else:
            judge = self._judge(options, user, enqueue)
            job = judge.job
            where = f"Judge run #{judge.pk}"
        assert job is not None
        if options["here"]:
            job_cli.run_here(job, self.stderr, worker="manage.py evaluate")
        else:
            if options["no_wait"] and job.status != Job.Status.FAILED:
                self.stdout.write(f"{where}: job #{job.pk} queued on the {job.queue} queue.")
                return
            job_cli.wait_on_worker(job, self.stdout, self.stderr, label=where)
        job_cli.report_end(job, self.stdout, label=where)

    def _benchmark(self, options: dict[str, Any], user: Any, enqueue: bool) -> BenchmarkRun:
        methods = selectors.available_methods()
        test_available = len(selectors.test_image_ids())
        distractors_available = len(selectors.distractor_ids())
        form = BenchmarkForm(
            methods=methods,
            test_available=test_available,
            distractors_available=distractors_available,
        )
        initial = {name: form.fields[name].initial for name in form.fields}
        chosen = _words(options["methods"]) or [method.key for method in methods]
        unknown = sorted(set(chosen) - {method.key for method in methods})
        if unknown:
            known = ", ".join(method.key for method in methods)
            raise CommandError(f"Unknown methods: {', '.join(unknown)} (known: {known})")
        data = {
            "name": options["name"],
            "methods": chosen,
            "n_test": options["n_test"] or initial["n_test"],
            "n_distractors": (
                initial["n_distractors"]
                if options["n_distractors"] is None
                else options["n_distractors"]
            ),
            "n_queries": options["n_queries"] or initial["n_queries"],
            "k": options["k"],
            "seed": options["seed"],
        }
        form = BenchmarkForm(
            data,
            methods=methods,
            test_available=test_available,
            distractors_available=distractors_available,
        )
        if not form.is_valid():
            raise CommandError(_form_errors(form))
        clean = form.cleaned_data
        return benchmark_start(
            name=clean["name"].strip(),
            methods=form.chosen_methods(),
            n_test=clean["n_test"],
            n_distractors=clean["n_distractors"],
            n_queries=clean["n_queries"],
            k=clean["k"],
            seed=clean["seed"],
            user=user,
            enqueue=enqueue,
        )

    def _judge(self, options: dict[str, Any], user: Any, enqueue: bool) -> JudgeRun:
        if options["resume"]:
            run = JudgeRun.objects.filter(pk=options["resume"]).first()
            if run is None:
                raise CommandError(f"There is no judge run #{options['resume']}.")
            try:
                return judge_resume(
                    run=run,
                    api_key=None,
                    concurrency=options["concurrency"],
                    user=user,
                    enqueue=enqueue,
                )
            except JudgeRunBusy as exc:
                raise CommandError(str(exc)) from None
        if not options["benchmark"]:
            raise CommandError("Name the benchmark run: --benchmark ID (or --resume a judge run).")
        benchmark = BenchmarkRun.objects.filter(pk=options["benchmark"]).first()
        if benchmark is None:
            raise CommandError(f"There is no benchmark run #{options['benchmark']}.")
        data = {
            "endpoint": options["url"] or "",
            "model_name": options["model"],
            "temperature": options["temperature"],
            "methods": _words(options["methods"]) or list(benchmark.methods),
            "both_orders": options["both_orders"],
            "concurrency": options["concurrency"],
            "price_input_per_m": options["price_input"],
            "price_output_per_m": options["price_output"],
        }
        form = JudgeForm(
            {key: value for key, value in data.items() if value is not None},
            benchmark=benchmark,
            allow_key=False,
        )
        if not form.is_valid():
            raise CommandError(_form_errors(form).replace("--endpoint", "--url"))
        clean = form.cleaned_data
        return judge_start(
            benchmark=benchmark,
            endpoint=clean["endpoint"],
            model_name=clean["model_name"].strip(),
            temperature=clean["temperature"],
            methods=clean["methods"],
            both_orders=clean["both_orders"],
            concurrency=clean["concurrency"],
            price_input_per_m=clean.get("price_input_per_m"),
            price_output_per_m=clean.get("price_output_per_m"),
            api_key=None,
            user=user,
            enqueue=enqueue,
        )
