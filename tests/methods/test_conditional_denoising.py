"""Class-conditional DDPM and flow matching: label handling, classifier-free guidance (its arithmetic, one batched
model call per step), saving and loading (also with plain Diffusers), training with label dropout, and a small
budget run where guidance lifts the digits classifier's accuracy far above chance."""

import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline

import genzoo
from genzoo.conditioning import class_label_ids, drop_labels, model_id2label, set_id2label
from genzoo.metrics.evaluate import evaluate_pipeline
from genzoo.testing import run_training

from helpers import samples_of, text_pipeline, tiny_unet

DIGITS = {i: str(i) for i in range(10)}


def class_pipeline(family="flow-matching", data="image", seed=0):
    torch.manual_seed(seed)
    if data == "image":
        unet = tiny_unet(num_class_embeds=11)
    else:
        unet = genzoo.MLPDenoiser(hidden_dim=16, num_layers=2, time_embed_dim=16, num_class_embeds=11)
    set_id2label(unet, DIGITS)
    if family == "ddpm":
        pipe = genzoo.DDPMPipeline(unet=unet, scheduler=genzoo.DDPMScheduler(num_train_timesteps=50))
    else:
        pipe = genzoo.FlowMatchingPipeline(unet=unet, scheduler=genzoo.FlowMatchEulerScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


class CallRecorder:
    """Counts the model's calls and the batch sizes it saw."""

    def __init__(self, model):
        self.batches = []
        model.register_forward_pre_hook(lambda module, args: self.batches.append(args[0].shape[0]))


@pytest.mark.parametrize("data", ["image", "vector"])
def test_guidance_is_uncond_plus_scale_times_the_difference_in_one_call(data):
    pipe = class_pipeline(data=data)
    shape = (3, 1, 8, 8) if data == "image" else (3, 2)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([7, 0, 3])
    recorder = CallRecorder(pipe.unet)
    out = pipe(batch_size=3, latents=latents, class_labels=[7, 0, 3], guidance_scale=4.0, num_inference_steps=1,
               output_type="pt")
    got = out.images if data == "image" else out.samples
    assert recorder.batches == [6]  # unconditional and conditional halves in one call
    # by hand: one Euler step from t=0 to t=1 with the guided velocity
    t = pipe.scheduler.timesteps[0]
    with torch.no_grad():
        cond = pipe.unet(latents, t, class_labels=labels).sample
        uncond = pipe.unet(latents, t, class_labels=torch.full_like(labels, 10)).sample
    expected = latents + (uncond + 4.0 * (cond - uncond))
    if data == "image":
        expected = ((expected + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_scale_one_is_a_single_conditional_pass_and_zero_is_the_unconditional_model():
    pipe = class_pipeline()
    recorder = CallRecorder(pipe.unet)
    plain = samples_of(pipe, class_labels=5, guidance_scale=1.0)
    assert recorder.batches == [3] * 4
    null_only = samples_of(pipe, class_labels=5, guidance_scale=0.0)
    other_label_unguided = samples_of(pipe, class_labels=2, guidance_scale=0.0)
    torch.testing.assert_close(null_only, other_label_unguided)  # scale 0 ignores the label entirely
    assert not torch.allclose(plain, samples_of(pipe, class_labels=2, guidance_scale=1.0))


def test_labels_by_name_by_id_per_sample_and_by_default():
    pipe = class_pipeline()
    assert pipe.labels["7"] == 7 and pipe.get_label_ids(["7", "1"]) == [7, 1]
    by_name = samples_of(pipe, class_labels=["7", "1", "1"])
    by_id = samples_of(pipe, class_labels=torch.tensor([7, 1, 1]))
    torch.testing.assert_close(by_name, by_id)
    # a list with batch_size 1 sets the batch; a multiple repeats each label in order
    assert samples_of(pipe, batch_size=1, class_labels=[3, 4]).shape[0] == 2
    torch.testing.assert_close(samples_of(pipe, batch_size=4, class_labels=[3, 4]),
                               samples_of(pipe, batch_size=4, class_labels=[3, 3, 4, 4]))
    # None cycles through the classes
    torch.testing.assert_close(samples_of(pipe, batch_size=3), samples_of(pipe, batch_size=3, class_labels=[0, 1, 2]))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(class_labels="seven"), "Unknown class label 'seven'"),
        (dict(class_labels=10), "Class label 10 is out of range"),
        (dict(class_labels=[1, 2], batch_size=3), "Got 2 class_labels for batch_size=3"),
        (dict(class_labels=1.5), "class_labels must be ints or label names"),
        (dict(prompt="a seven"), "has no text encoder, so it takes no prompt (it is class-conditional"),
    ],
)
def test_bad_labels_are_named(kwargs, message):
    pipe = class_pipeline()
    with pytest.raises((ValueError, TypeError)) as info:
        samples_of(pipe, **{"batch_size": 3, **kwargs})
    assert message in str(info.value)


def test_an_unconditional_model_refuses_labels_and_guidance():
    pipe = genzoo.FlowMatchingPipeline(unet=tiny_unet(), scheduler=genzoo.FlowMatchEulerScheduler())
    with pytest.raises(ValueError, match="is unconditional .* takes no class_labels"):
        samples_of(pipe, class_labels=3)
    with pytest.raises(ValueError, match="guidance_scale=2.0 needs a class- or text-conditional model"):
        samples_of(pipe, guidance_scale=2.0)


@pytest.mark.parametrize("family", ["ddpm", "flow-matching"])
def test_save_and_load_keep_the_labels_and_the_samples(family, tmp_path):
    pipe = class_pipeline(family)
    pipe.save_pretrained(tmp_path)
    assert '"_id2label"' in (tmp_path / "unet" / "config.json").read_text()
    for loaded in (genzoo.load_pipeline(tmp_path), DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)):
        loaded.set_progress_bar_config(disable=True)
        assert loaded.id2label == DIGITS and model_id2label(loaded.unet) == DIGITS
        torch.testing.assert_close(samples_of(loaded, class_labels=["4", "2", "9"]),
                                   samples_of(pipe, class_labels=["4", "2", "9"]))


def test_a_diffusers_scheduler_samples_with_guidance():
    pipe = class_pipeline("ddpm")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    first = samples_of(pipe, class_labels=[1, 2, 3], guidance_scale=2.0)
    assert torch.isfinite(first).all()
    torch.testing.assert_close(first, samples_of(pipe, class_labels=[1, 2, 3], guidance_scale=2.0))


def test_label_dropout_uses_the_null_label_at_the_asked_rate():
    labels = torch.arange(10).repeat(1000)
    dropped = drop_labels(labels, 0.2, 10, torch.Generator().manual_seed(0))
    rate = (dropped == 10).float().mean().item()
    assert abs(rate - 0.2) < 0.01
    kept = dropped != 10
    assert torch.equal(dropped[kept], labels[kept])
    assert torch.equal(drop_labels(labels, 0.0, 10, torch.Generator()), labels)


def test_label_helper_without_labels_cycles_classes():
    ids, batch = class_label_ids(None, 12, DIGITS, owner="m")
    assert batch == 12 and ids.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["flow-matching", "ddpm"])
@pytest.mark.parametrize("dataset", ["digits", "moons"])
def test_class_conditional_training_saves_a_guided_pipeline(method, dataset, tmp_path):
    """moons has no labels, so it must be refused with a pointer to --label_column; digits trains and loads."""
    if dataset == "moons":
        with pytest.raises(ValueError, match="--conditioning class needs class labels.*--label_column"):
            run_training(method, dataset, tmp_path, "--conditioning", "class")
        return
    run_training(method, dataset, tmp_path, "--conditioning", "class")
    pipe = genzoo.load_pipeline(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.id2label == DIGITS and pipe.unet.config.num_class_embeds == 11
    assert samples_of(pipe, class_labels="3", guidance_scale=3.0, steps=2).shape == (3, 1, 8, 8)


@pytest.mark.slow
def test_guidance_lifts_class_accuracy_far_above_chance(tmp_path):
    """A small budget (120 steps of a small UNet): with guidance, most samples are the asked-for digit (100 steps
    gave 1.0 at scale 3 on seeds 0, 1 and 2); without the label (scale 0) the model is unconditional and the accuracy
    sits near chance (0.1)."""
    run_training("flow-matching", "digits", tmp_path, "--conditioning", "class", "--max_train_steps", "120",
                 "--train_batch_size", "64", "--block_out_channels", "16,32", "--learning_rate", "2e-3",
                 "--checkpointing_steps", "1000", "--save_images_steps", "1000", "--lr_warmup_steps", "20")
    pipe = genzoo.load_pipeline(tmp_path)
    accuracy = {g: evaluate_pipeline(pipe, "digits", num_samples=200, steps=10, guidance_scale=g, likelihood=False)
                ["class_accuracy"] for g in (0.0, 3.0)}
    assert accuracy[0.0] < 0.3, accuracy
    assert accuracy[3.0] > 0.6, accuracy


# ---------------------------------------------------------------------------------------------------- text prompts
def test_text_guidance_is_one_batched_call_against_the_negative_prompt():
    pipe = text_pipeline()
    latents = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    recorder = CallRecorder(pipe.unet)
    got = pipe(latents=latents, prompt=["a handwritten seven", "1"], negative_prompt="the digit 1",
               guidance_scale=2.5, num_inference_steps=1, output_type="pt").images
    assert recorder.batches == [4]
    t = pipe.scheduler.timesteps[0]
    with torch.no_grad():
        cond = pipe.unet(latents, t, encoder_hidden_states=pipe.encode_prompt(["a handwritten seven", "1"])).sample
        uncond = pipe.unet(latents, t, encoder_hidden_states=pipe.encode_prompt(["the digit 1"] * 2)).sample
    expected = ((latents + uncond + 2.5 * (cond - uncond) + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_prompts_are_matched_to_the_batch_and_bad_ones_are_named(caplog):
    pipe = text_pipeline()
    torch.testing.assert_close(samples_of(pipe, batch_size=4, prompt=["7", "1"]),
                               samples_of(pipe, batch_size=4, prompt=["7", "7", "1", "1"]))
    assert samples_of(pipe, batch_size=1, prompt=["7", "1", "7"]).shape[0] == 3
    assert not torch.allclose(samples_of(pipe, prompt="7"), samples_of(pipe, prompt="7", negative_prompt="1"))
    with pytest.raises(ValueError, match="Got 2 prompts for batch_size=3"):
        samples_of(pipe, batch_size=3, prompt=["7", "1"])
    with pytest.raises(ValueError, match="conditioned on text: pass prompt"):
        samples_of(pipe, class_labels=7)
    with caplog.at_level("WARNING", logger="genzoo.text"):
        samples_of(pipe, prompt="a handwritten seven a handwritten one the digit")
    assert "truncated" in caplog.text and "one the digit" in caplog.text
    with pytest.raises(ValueError, match="needs both a tokenizer and a text_encoder"):
        genzoo.FlowMatchingPipeline(unet=pipe.unet, scheduler=pipe.scheduler, tokenizer=pipe.tokenizer)


@pytest.mark.parametrize("family", ["ddpm", "flow-matching"])
def test_text_pipelines_save_and_load_with_genzoo_and_plain_diffusers(family, tmp_path):
    pipe = text_pipeline(family)
    pipe.save_pretrained(tmp_path)
    index = (tmp_path / "model_index.json").read_text()
    assert '"transformers"' in index and "CLIPTextModel" in index and "UNet2DConditionModel" in index
    expected = samples_of(pipe, prompt=["the digit 7", "a handwritten one", "7"], guidance_scale=2.0)
    for loaded in (genzoo.load_pipeline(tmp_path), DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)):
        assert type(loaded) is type(pipe) and type(loaded.text_encoder).__name__ == "CLIPTextModel"
        loaded.set_progress_bar_config(disable=True)
        got = samples_of(loaded, prompt=["the digit 7", "a handwritten one", "7"], guidance_scale=2.0)
        torch.testing.assert_close(got, expected)


@pytest.mark.slow
@pytest.mark.parametrize("method,extra", [("flow-matching", []), ("ddpm", ["--train_text_encoder"])])
def test_text_conditional_training_saves_a_prompted_pipeline(method, extra, tmp_path, caplog):
    from genzoo.data import digits_dataset
    from genzoo.text import caption_length

    with caplog.at_level("INFO", logger="genzoo.methods"):
        run_training(method, "digits", tmp_path, "--conditioning", "text", "--text_hidden_size", "16", *extra)
    pipe = genzoo.load_pipeline(tmp_path)
    # no --max_prompt_length: the longest training caption's length, said in the log, so no caption was cut
    longest = caption_length(digits_dataset("train")["caption"])
    assert pipe.tokenizer.model_max_length == longest and "truncated" not in caplog.text
    assert f"--max_prompt_length not given: {longest} tokens, the longest of the" in caplog.text
    pipe.set_progress_bar_config(disable=True)
    assert pipe.tokenizer("the digit 7").input_ids[-1] != pipe.tokenizer.unk_token_id
    assert samples_of(pipe, prompt="a handwritten seven", steps=2).shape == (3, 1, 8, 8)
    metrics = (tmp_path / "metrics.json").read_text()
    assert ('"text_encoder": "trained"' in metrics) == bool(extra)
    with pytest.raises(ValueError, match="--conditioning text needs image data"):
        run_training(method, "moons", tmp_path / "moons", "--conditioning", "text", "--caption_column", "none")


@pytest.mark.slow
@pytest.mark.parametrize(
    "method,extra",
    [("flow-matching", ["--conditioning", "class"]),
     ("ddpm", ["--conditioning", "text", "--train_text_encoder", "--text_hidden_size", "16"])],
)
def test_conditional_resume_is_exact(method, extra, tmp_path):
    """Label/caption dropout draws from the trainer's generator, and a trained text encoder's EMA is checkpointed,
    so a run stopped at step 3 and resumed ends with the same weights (text encoder included)."""
    from genzoo.testing import assert_resumes_exactly, final_weights

    _, stopped = assert_resumes_exactly(method, tmp_path, *extra)
    assert any(k.startswith("text_encoder.") for k in final_weights(stopped)) == ("text" in extra)
