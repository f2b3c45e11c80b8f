/* mp_train_peft.h - sam-tune's parameter-efficient outputs and modes beyond
 * the decoder and LoRA (mp_train.h): a safetensors writer, the LoRA adapter
 * in Hugging Face PEFT's layout. */
#ifndef MP_TRAIN_PEFT_H
#define MP_TRAIN_PEFT_H

#include "mp_train.h"

/* float32 tensors as a .safetensors file (names[i], ndim[i] dims shapes[i],
 * data[i]), in the given order; meta: NULL or key, value, ..., NULL strings
 * for "__metadata__". Atomic. 0 or -1 + mp_err. */
int mp_safetensors_save(const char *path, size_t n, const char *const *names, const int *ndim,
                        const int64_t *const *shapes, const float *const *data, const char *const *meta);

/* The LoRA of t (mp_tune_add_lora) and its mask decoder as a Hugging Face
 * PEFT adapter in folder dir (made if missing): adapter_config.json (a
 * LoraConfig: target_modules ["qkv"], modules_to_save ["mask_decoder"]) and
 * adapter_model.safetensors with PEFT's key names
 *   base_model.model.image_encoder.blocks.N.attn.qkv.lora_A.weight  (2r x E)
 *   base_model.model.image_encoder.blocks.N.attn.qkv.lora_B.weight  (3E x 2r)
 *   base_model.model.mask_decoder.*                                (every decoder tensor)
 * SAMed's q/v scheme on segment_anything's fused qkv Linear is a PEFT LoRA of
 * rank 2r on qkv: lora_A = [A_q; A_v], lora_B = [B_q 0; 0 0; 0 B_v] (the k
 * rows zero), lora_alpha = 2 alpha, so that PEFT's scale lora_alpha / (2r)
 * equals alpha / r. 0 or -1 + mp_err. */
int mp_tune_save_peft(const mp_sam_tune *t, const char *dir);

/* a folder for outputs: made when missing, else it must be a folder */
int mp_tune_outdir(const char *dir);

/* --mode full (MedSAM's recipe): every image_encoder.* tensor of the
 * checkpoint joins the trained tensors (patch embedding, pos_embed, norms,
 * qkv, proj, rel_pos_h/w, MLP, neck); the model's encoder views point at
 * the trained copies until mp_tune_free. ViT only. 0 or -1 + mp_err. */
int mp_tune_add_full(mp_sam_tune *t);

/* --mode adapter (Medical-SAM-Adapter): in every encoder block a bottleneck
 * adapter (Linear E->E/4, GELU, Linear E/4->E) on the attention's output a
 * with its own skip connection (x1 = x + a + A_s(a)), and one beside the
 * MLP on LN2's output n, scaled 0.5 (x2 = x1 + mlp(n) + 0.5 A_m(n)); tensors
 * image_encoder.blocks.N.{Space,MLP}_Adapter.D_fc{1,2}.{weight,bias} as
 * nn.Linear initialises them (from seed). ViT only. 0 or -1 + mp_err. */
int mp_tune_add_adapter(mp_sam_tune *t, uint64_t seed);
/* the adapters as dir/adapter_model.safetensors (made if missing) */
int mp_tune_save_adapters(const mp_sam_tune *t, const char *dir);

#endif
