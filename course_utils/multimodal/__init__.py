"""Part 3 of the course, generative multimodal recommendation (survey Section 4).

``clip`` (open_clip contrastive models), ``fusion`` (ALBEF-style align-then-fuse),
``mvae`` (a two-modality VAE), ``image_diffusion`` (conditional diffusion with
diffusers) and ``connector`` (a LLaVA-style projector into an LLM).
"""
