//
// evoscan, search first: windows -> repeat masking; embeddings with decoys -> search (nearest
// windows and decoys) -> checks on the nominated pairs (q-values, repeats, BLAST, Smith-Waterman)
// -> report, per gene set of the samplesheet.
//
include { EVOSCAN_WINDOWS } from '../modules/local/windows'
include { EVOSCAN_MASK    } from '../modules/local/mask'
include { EVOSCAN_CHECK   } from '../modules/local/check'
include { EVOSCAN_REPORT  } from '../modules/local/report'
include { SCATTER_EMBED   } from '../subworkflows/local/scatter_embed'
include { SCATTER_SEARCH  } from '../subworkflows/local/scatter_search'

workflow EVOSCAN {
    take:
    ch_samples    // channel: [ val(meta), path(sequences), path(gtf) or [], path(regions BED) or [] ]
    rmsk          // list: [ path(RepeatMasker .out or repeat BED) ] or []
    embed_chunks  // integer: embedding chunks (one GPU task each with evo2/hf)
    search_chunks // integer: search chunks (query blocks)
    families      // list: [ path(gene -> family TSV) ] or []
    motifs        // list: [ path(JASPAR/MEME motif file) ] or [] (a JASPAR release named in --motifs)
    weights       // list: [ path(model checkpoint) ] or []
    model_dir     // list: [ path(hf model directory) ] or []
    model_config  // list: [ path(evo2 architecture YAML of a custom checkpoint) ] or []

    main:
    EVOSCAN_WINDOWS(ch_samples)
    ch_windows = EVOSCAN_WINDOWS.out.windows

    EVOSCAN_MASK(ch_windows.map { meta, windows -> [meta, windows, rmsk] })
    SCATTER_EMBED(ch_windows, embed_chunks, motifs, weights, model_dir, model_config)
    SCATTER_SEARCH(ch_windows.join(SCATTER_EMBED.out.embeddings), search_chunks)

    ch_check = ch_windows
        .join(EVOSCAN_MASK.out.masks)
        .join(SCATTER_SEARCH.out.neighbours)
        .map { meta, windows, masks, neighbours -> [meta, windows, masks, neighbours, families, motifs] }
    EVOSCAN_CHECK(ch_check)
    EVOSCAN_REPORT(ch_windows.join(EVOSCAN_CHECK.out.scores))

    emit:
    report      = EVOSCAN_REPORT.out.html        // channel: [ val(meta), path(report.html) ]
    candidates  = EVOSCAN_REPORT.out.candidates  // channel: [ val(meta), path(candidates.tsv) ]
    motif_sites = EVOSCAN_REPORT.out.motif_sites // channel: [ val(meta), path(motif_sites.tsv) ]
    pairs       = EVOSCAN_REPORT.out.pairs       // channel: [ val(meta), path(pairs.tsv.gz) ]
    bedpe       = EVOSCAN_REPORT.out.bedpe       // channel: [ val(meta), path(candidates.bedpe) ]
    interact    = EVOSCAN_REPORT.out.interact    // channel: [ val(meta), path(candidates.interact.bed), path(interact.as) ]
    bedgraph    = EVOSCAN_REPORT.out.bedgraph    // channel: [ val(meta), path(best_score.bedgraph) ]
    summary     = EVOSCAN_REPORT.out.summary     // channel: [ val(meta), path(summary.txt) ]
    scores      = EVOSCAN_CHECK.out.scores       // channel: [ val(meta), path(scores.h5) ]
    versions    = EVOSCAN_WINDOWS.out.versions.mix(EVOSCAN_MASK.out.versions, SCATTER_EMBED.out.versions,
        SCATTER_SEARCH.out.versions, EVOSCAN_CHECK.out.versions, EVOSCAN_REPORT.out.versions) // channel: [ val(process), val(tool), val(version) ]
}
