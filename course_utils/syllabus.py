"""The planned syllabus in one place: lesson 00's course map, the README and the tests read it."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

# (number, notebook, survey section, part, key methods)
LESSONS = (
    ("00", "00_welcome", "1, Fig. 1", "Start here", "environment check, data tour, course map"),
    ("01", "01_baselines_and_protocol", "5.1.1", "Start here", "Pop, ItemKNN, EASE, BPR-MF; full vs sampled ranking"),
    ("02", "02_autoencoders", "2.1", "Interaction-driven", "AutoRec, Mult-DAE, Mult-VAE, BERT-style masking, CVAE slates"),
    ("03", "03_autoregressive", "2.2", "Interaction-driven", "GRU4Rec, SASRec (CE vs BCE), BERT4Rec, sampling sequences"),
    ("04", "04_gans", "2.3", "Interaction-driven", "IRGAN, GAN augmentation"),
    ("05", "05_diffusion", "2.4", "Interaction-driven", "DiffRec"),
    ("06", "06_other_generative", "2.5", "Interaction-driven", "GFlowNets for lists, flows / neural processes"),
    ("07", "07_dense_retrieval", "3.1.1", "LLMs", "MiniLM, FAISS, user-embedding fusion"),
    ("08", "08_cross_encoders", "3.1.2", "LLMs", "fine-tuned cross-encoder, reranking"),
    ("09", "09_generative_prompting", "3.2.1", "LLMs", "zero/few-shot, constrained decoding, LLM ranker biases"),
    ("10", "10_tuning_llms", "3.2.2", "LLMs", "LoRA (TALLRec), soft prompts, explanation generation"),
    ("11", "11_rag", "3.3", "LLMs", "retrieve-then-rerank, review-grounded explanations"),
    ("12", "12_llm_features", "3.4", "LLMs", "text-initialised item embeddings, TIGER semantic IDs, query generation"),
    ("13", "13_conversational", "3.5", "LLMs", "tool-augmented ConvRec, critiquing, user simulator"),
    ("14", "14_contrastive_clip", "4.1–4.3", "Multimodal", "CLIP (open_clip), composed queries, cold start"),
    ("15", "15_fusion_albef", "4.3", "Multimodal", "ITC + ITM + MLM fusion"),
    ("16", "16_multimodal_vae", "4.4", "Multimodal", "ContrastVAE-style multimodal VAE"),
    ("17", "17_diffusion_generation", "4.4", "Multimodal", "conditional diffusion, personalised generation, try-on"),
    ("18", "18_multimodal_llm", "4.4", "Multimodal", "LLaVA-style connector"),
    ("19", "19_offline_evaluation", "5.1", "Evaluation", "full vs sampled, significance, beyond-accuracy, BLEU/ROUGE"),
    ("20", "20_efficiency", "5.1.2", "Evaluation", "latency, memory, FLOPs, energy, Pareto"),
    ("21", "21_online_and_simulation", "5.2", "Evaluation", "A/B and interleaving on simulated users, feedback loops"),
    ("22", "22_conversational_evaluation", "5.3", "Evaluation", "user simulator, LLM-as-judge reliability"),
    ("23", "23_societal_impact", "5.4", "Evaluation", "fairness, popularity bias, privacy, shilling"),
    ("24", "24_red_teaming", "6", "Evaluation", "prompt injection through item text, defences"),
    ("25", "25_holistic_report", "5.5, 6", "Evaluation", "HELM-style report from every lesson's results"),
)


def course_map(notebook_dir: str | Path | None = None) -> pd.DataFrame:
    """The syllabus with each lesson's status: 'ready' when its notebook exists, else 'coming'."""
    folder = Path(notebook_dir) if notebook_dir else Path(__file__).resolve().parents[1] / "notebooks"
    frame = pd.DataFrame(LESSONS, columns=["lesson", "notebook", "survey section", "part", "key methods"])
    frame["status"] = ["ready" if (folder / f"{nb}.ipynb").exists() else "coming" for nb in frame["notebook"]]
    return frame
