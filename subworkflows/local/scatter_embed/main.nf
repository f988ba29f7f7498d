//
// Embedding scattered over chunks of windows (one GPU task per chunk for evo2/hf), then merged.
// Each chunk is its own task, so -resume reuses every finished chunk.
//
include { EVOSCAN_EMBED } from '../../../modules/local/embed'
include { EVOSCAN_MERGE } from '../../../modules/local/merge'

workflow SCATTER_EMBED {
    take:
    ch_windows // channel: [ val(meta), path(windows) ]
    chunks     // integer: number of chunks
    motifs     // list: [ path(JASPAR/MEME motif file) ] or [] (a release named in the options)
    weights    // list: [ path(model checkpoint) ] or []
    model_dir  // list: [ path(hf model directory) ] or []
    model_config // list: [ path(evo2 architecture YAML of a custom checkpoint) ] or []

    main:
    ch_chunks = ch_windows.flatMap { meta, windows -> (1..chunks).collect { i -> [meta, windows, i, chunks, motifs, weights, model_dir, model_config] } }
    EVOSCAN_EMBED(ch_chunks)
    ch_parts = EVOSCAN_EMBED.out.embeddings.groupTuple(size: chunks)
        .join(ch_windows)
        .map { meta, parts, windows -> [meta, windows, parts, 'embeddings'] }
    EVOSCAN_MERGE(ch_parts)

    emit:
    embeddings = EVOSCAN_MERGE.out.merged // channel: [ val(meta), path(embeddings.h5) ]
    versions   = EVOSCAN_EMBED.out.versions.mix(EVOSCAN_MERGE.out.versions) // channel: [ val(process), val(tool), val(version) ]
}
