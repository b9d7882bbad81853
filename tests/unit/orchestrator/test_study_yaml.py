"""How study YAML is read: YAML 1.2 scalars, refused tags, credentials."""

from __future__ import annotations

from pathlib import Path

from llem_testkit.studies import load_error, write

from orchestrator.study import StudyFileError, load_study

SECRET = "hf_abcdefghijklmnopqrstuvwxyz0123456789"


def test_norway_problem_no_is_text_and_fails_naming_field_and_allowed_values(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "model: tiny\nbackend: pytorch\nprecision: no\n")
    error = load_error(path)
    assert (error.line, error.key) == (3, "precision")
    assert "precision: 'no' is not allowed" in str(error)
    assert "'bf16'" in str(error) and "'fp16'" in str(error)


def test_yes_no_in_a_boolean_field_mean_true_false(tmp_path: Path) -> None:
    path = write(tmp_path, "model: tiny\nbackend: pytorch\npytorch: {torch_compile: no}\n")
    config = load_study(path).experiments[0].config
    assert config.pytorch is not None and config.pytorch.torch_compile is False


def test_leading_zero_integer_is_refused_as_ambiguous(tmp_path: Path) -> None:
    path = write(tmp_path, "model: tiny\nbackend: pytorch\noutput_len: 052\n")
    error = load_error(path)
    assert (error.line, error.column, error.key) == (3, 13, "output_len")
    assert "leading zero" in str(error)
    assert "octal 42" in str(error) and "52" in str(error)
    assert "write 52" in (error.fix or "")


def test_quoted_leading_zero_and_dates_stay_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        experiments:
          - {revision: '052'}
          - {revision: 2024-01-01}
        """,
    )
    revisions = [e.config.revision for e in load_study(path).experiments]
    assert revisions == ["052", "2024-01-01"]


def test_plain_integers_in_other_notations_still_work(tmp_path: Path) -> None:
    path = write(tmp_path, "model: tiny\nbackend: pytorch\noutput_len: 1_024\ninput_len: 0x40\n")
    config = load_study(path).experiments[0].config
    assert (config.output_len, config.input_len) == (1024, 64)


def tag_error(tmp_path: Path, template: str) -> StudyFileError:
    """Load ``template`` with ``{marker}`` naming a file its tag would create; assert it was not."""
    marker = tmp_path / "pwned"
    error = load_error(write(tmp_path, template.format(marker=marker)))
    assert not marker.exists()
    return error


def test_python_tag_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    error = tag_error(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        revision: !!python/object/apply:os.system ["touch {marker}"]
        """,
    )
    assert (error.line, error.column) == (3, 11)
    assert "YAML tag '!!python/object/apply:os.system'" in str(error)


def test_python_tag_inside_a_sweep_is_refused_too(tmp_path: Path) -> None:
    error = tag_error(
        tmp_path,
        """
        model: tiny
        backend: pytorch
        sweep:
          unknown_key: [!!python/object/apply:os.system ["touch {marker}"]]
        """,
    )
    assert "not allowed" in str(error) and error.line == 4


def test_custom_tag_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "model: !include other.yaml\nbackend: pytorch\n")
    error = load_error(path)
    assert "YAML tag '!include'" in str(error) and error.line == 1


def test_merge_keys_are_refused_with_a_pointer_to_base(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults: &d {model: tiny}
        <<: *d
        backend: pytorch
        """,
    )
    error = load_error(path)
    assert error.line == 2 and "base:" in (error.fix or "")


def test_alias_bomb_is_stopped(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    assert "aliases repeat more than 100,000 values" in str(load_error(path))


def test_credential_key_points_at_hf_token_and_never_shows_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, f"model: tiny\nbackend: pytorch\nhf_token: {SECRET}\n")
    error = load_error(path)
    assert error.line == 3 and error.key == "hf_token"
    assert "HF_TOKEN" in str(error)
    assert SECRET not in str(error) and SECRET not in repr(error.args)


def test_credential_like_value_under_any_key_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        model: tiny
        backend: pytorch
        sweep:
          passthrough_kwargs.extra: [plain, {SECRET}]
        """,
    )
    error = load_error(path)
    assert error.line == 4 and "looks like a credential" in str(error)
    assert SECRET not in str(error)


def test_credential_in_a_yaml_syntax_error_line_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, f'model: tiny\nbackend: pytorch\nhf_token: "{SECRET}\n')
    error = load_error(path)
    assert "not valid YAML" in str(error)
    assert SECRET not in str(error)
